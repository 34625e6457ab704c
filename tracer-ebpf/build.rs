use which::which;

/// The eBPF build links with `bpf-linker`, a dependency cargo cannot see: rebuild when it
/// changes.
fn main() {
    if let Ok(bpf_linker) = which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", bpf_linker.display());
    }
}
