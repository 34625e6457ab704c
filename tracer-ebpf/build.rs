use which::which;

fn main() {
    // The eBPF build links with `bpf-linker`, a dependency cargo cannot see: rebuild when
    // it changes.
    if let Ok(bpf_linker) = which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", bpf_linker.display());
    }
    // Let LLVM expand memset and memcpy inline. bpf-linker's default defers their
    // expansion to keep copies in order for JITs that pattern-match them, and memset then
    // becomes a call to a BPF subprogram: its frame adds to the caller's, which older
    // verifiers (6.1) refuse past 512 bytes in all.
    println!("cargo:rustc-link-arg=--disable-expand-memcpy-in-order");
}
