//! The catalogue against the embedded eBPF object: a program name or kind that does not
//! match would otherwise fail only when that hook is attached, on some kernel.

use std::collections::BTreeMap;

use aya_obj::{Object, ProgramSection};

use super::{
    catalogue::{Hook, Program, SOFTIRQ_TRACKING},
    load::EBPF_OBJECT,
    tls,
};
use tracer_common::programs as name;

/// The kind of program as the object's section names it, as the catalogue says it.
fn kind_in_catalogue(program: Program) -> &'static str {
    match program {
        Program::Tracepoint { .. } => "tracepoint",
        Program::RawTracepoint { .. } => "raw tracepoint",
        Program::Kprobe { .. } => "kprobe",
        Program::Kretprobe { .. } => "kretprobe",
        Program::FEntry { .. } => "fentry",
        Program::FExit { .. } => "fexit",
    }
}

fn kind_in_object(section: &ProgramSection) -> &'static str {
    match section {
        ProgramSection::TracePoint => "tracepoint",
        ProgramSection::RawTracePoint => "raw tracepoint",
        ProgramSection::KProbe => "kprobe",
        ProgramSection::KRetProbe => "kretprobe",
        ProgramSection::FEntry { .. } => "fentry",
        ProgramSection::FExit { .. } => "fexit",
        ProgramSection::UProbe { .. } => "uprobe",
        ProgramSection::URetProbe { .. } => "uretprobe",
        _ => "another kind",
    }
}

/// Every program the catalogue names, by name, with its kind.
fn catalogue() -> BTreeMap<&'static str, &'static str> {
    let hooks = Hook::ALL.iter().flat_map(|&hook| {
        hook.preference()
            .iter()
            .flat_map(move |&mechanism| hook.programs(mechanism))
    });
    let tls = tls::PROGRAMS.iter().map(|&program| {
        let kind = match program {
            name::SSL_CALL_RETURN => "uretprobe",
            _ => "uprobe",
        };
        (program, kind)
    });
    SOFTIRQ_TRACKING
        .iter()
        .chain(hooks)
        .map(|&program| (program.name(), kind_in_catalogue(program)))
        .chain(tls)
        .collect()
}

#[test]
fn the_catalogue_and_the_ebpf_object_name_the_same_programs() {
    let object = Object::parse(EBPF_OBJECT).expect("the embedded eBPF object parses");
    let in_object: BTreeMap<&str, &str> = object
        .programs
        .iter()
        .map(|(name, program)| (name.as_str(), kind_in_object(&program.section)))
        // The benchmark's empty program, never attached by the daemon.
        .filter(|&(name, kind)| (name, kind) != (name::FLOOR, "raw tracepoint"))
        .collect();
    assert_eq!(catalogue(), in_object);
}
