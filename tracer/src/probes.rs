//! Loading the eBPF object into the kernel and attaching its programs: the layouts the
//! programs need are read from the running kernel first and set as globals.

use std::collections::BTreeMap;

use anyhow::{Context as _, Result, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, MapData, PerCpuArray, RingBuf},
    programs::TracePoint,
};
use aya_log::EbpfLogger;
use tracer_common::{
    EVENTS_MAP, FIELD_ABSENT, LOST_MAP, PORTS_MAP, SET_STATE_LAYOUT_GLOBAL, SetStateLayout,
};

use crate::tracefs::{self, TracepointFormat};

/// The eBPF object built by `build.rs`, embedded so the binary is self-contained.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracer"));

/// How each hook is attached, e.g. `state_change -> tracepoint`.
pub type AttachPlan = BTreeMap<&'static str, &'static str>;

/// The programs, loaded and attached, and the maps the daemon reads. Dropping it detaches
/// everything.
pub struct Probes {
    /// Keeps the programs attached while it lives.
    pub ebpf: Ebpf,
    pub events: RingBuf<MapData>,
    pub lost: PerCpuArray<MapData, u64>,
    /// eBPF-side diagnostics (aya-log); `None` when the object logs nothing.
    pub logger: Option<EbpfLogger<&'static dyn log::Log>>,
    pub plan: AttachPlan,
}

/// The offsets of `sock:inet_sock_set_state`'s fields, checking each field's size so a
/// kernel that changed a type is refused rather than misread.
pub fn set_state_layout(format: &TracepointFormat) -> Result<SetStateLayout> {
    let field = |name: &str, size: u16| -> Result<u16> {
        match format.field(name) {
            Some(field) if field.size == size => Ok(field.offset),
            Some(field) => bail!(
                "sock:inet_sock_set_state field {name} is {} bytes on this kernel, expected {size}",
                field.size
            ),
            None => bail!("sock:inet_sock_set_state has no {name} field on this kernel"),
        }
    };
    Ok(SetStateLayout {
        skaddr: field("skaddr", 8)?,
        oldstate: field("oldstate", 4)?,
        newstate: field("newstate", 4)?,
        sport: field("sport", 2)?,
        dport: field("dport", 2)?,
        family: field("family", 2)?,
        // Added in 4.16 with SCTP support; before that every event was TCP.
        protocol: if format.field("protocol").is_some() {
            field("protocol", 2)?
        } else {
            FIELD_ABSENT
        },
        saddr: field("saddr", 4)?,
        daddr: field("daddr", 4)?,
        saddr_v6: field("saddr_v6", 16)?,
        daddr_v6: field("daddr_v6", 16)?,
    })
}

fn attach_tracepoint(ebpf: &mut Ebpf, program: &str, category: &str, name: &str) -> Result<()> {
    let tracepoint: &mut TracePoint = ebpf
        .program_mut(program)
        .with_context(|| format!("the eBPF object has no program {program}"))?
        .try_into()?;
    tracepoint
        .load()
        .with_context(|| format!("the kernel refused to load the {category}:{name} program"))?;
    tracepoint
        .attach(category, name)
        .with_context(|| format!("cannot attach to the {category}:{name} tracepoint"))?;
    Ok(())
}

/// Loads the programs, sets the port filter and attaches, in the order that makes the
/// first state change already carry the right process context.
pub fn attach(ports: &[u16]) -> Result<Probes> {
    let tracefs = tracefs::root()?;
    let layout = set_state_layout(&TracepointFormat::read(
        &tracefs,
        "sock",
        "inet_sock_set_state",
    )?)?;
    // Fail on a missing softirq tracepoint by name before the kernel says ENOENT.
    TracepointFormat::read(&tracefs, "irq", "softirq_entry")?;

    let mut ebpf = EbpfLoader::new()
        .override_global(SET_STATE_LAYOUT_GLOBAL, &layout, true)
        .load(EBPF_OBJECT)
        .context("the kernel refused the eBPF object")?;
    let logger = EbpfLogger::init(&mut ebpf).ok();

    let mut filter: Array<_, u64> = Array::try_from(
        ebpf.map_mut(PORTS_MAP)
            .context("the eBPF object has no port filter map")?,
    )?;
    let mut words: BTreeMap<u32, u64> = BTreeMap::new();
    for &port in ports {
        *words.entry(u32::from(port / 64)).or_default() |= 1 << (port % 64);
    }
    for (index, word) in words {
        filter
            .set(index, word, 0)
            .context("cannot set the port filter")?;
    }

    attach_tracepoint(&mut ebpf, "softirq_entry", "irq", "softirq_entry")?;
    attach_tracepoint(&mut ebpf, "softirq_exit", "irq", "softirq_exit")?;
    attach_tracepoint(
        &mut ebpf,
        "inet_sock_set_state",
        "sock",
        "inet_sock_set_state",
    )?;

    let events = RingBuf::try_from(
        ebpf.take_map(EVENTS_MAP)
            .context("the eBPF object has no ring buffer")?,
    )?;
    let lost = PerCpuArray::try_from(
        ebpf.take_map(LOST_MAP)
            .context("the eBPF object has no loss counter")?,
    )?;
    Ok(Probes {
        events,
        lost,
        logger,
        plan: AttachPlan::from([("state_change", "tracepoint")]),
        ebpf,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_of_the_running_kernel_matches_its_format() {
        let root = tracefs::root().unwrap();
        let format = TracepointFormat::read(&root, "sock", "inet_sock_set_state").unwrap();
        let layout = set_state_layout(&format).unwrap();
        assert_eq!(layout.skaddr, format.field("skaddr").unwrap().offset);
        assert_eq!(layout.daddr_v6, format.field("daddr_v6").unwrap().offset);
    }

    #[test]
    fn a_changed_field_size_is_refused_by_name() {
        let format =
            TracepointFormat::parse("field:const void * skaddr;\toffset:8;\tsize:4;\tsigned:0;")
                .unwrap();
        let err = set_state_layout(&format).unwrap_err().to_string();
        assert_eq!(
            err,
            "sock:inet_sock_set_state field skaddr is 4 bytes on this kernel, expected 8"
        );
    }

    #[test]
    fn protocol_is_optional() {
        let format = TracepointFormat::parse(
            "field:const void * skaddr;\toffset:8;\tsize:8;\tsigned:0;
             field:int oldstate;\toffset:16;\tsize:4;\tsigned:1;
             field:int newstate;\toffset:20;\tsize:4;\tsigned:1;
             field:__u16 sport;\toffset:24;\tsize:2;\tsigned:0;
             field:__u16 dport;\toffset:26;\tsize:2;\tsigned:0;
             field:__u16 family;\toffset:28;\tsize:2;\tsigned:0;
             field:__u8 saddr[4];\toffset:30;\tsize:4;\tsigned:0;
             field:__u8 daddr[4];\toffset:34;\tsize:4;\tsigned:0;
             field:__u8 saddr_v6[16];\toffset:38;\tsize:16;\tsigned:0;
             field:__u8 daddr_v6[16];\toffset:54;\tsize:16;\tsigned:0;",
        )
        .unwrap();
        assert_eq!(set_state_layout(&format).unwrap().protocol, FIELD_ABSENT);
    }
}
