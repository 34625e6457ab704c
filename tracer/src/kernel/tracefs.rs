//! tracefs: where it is mounted (mounting it when the host has not), and the record
//! layout of a tracepoint, read from its `format` file because it differs by kernel.
//! tracefs is readable by root only and mounting it takes CAP_SYS_ADMIN: the errors say
//! which capability is missing rather than a bare "permission denied".

use std::{
    collections::HashMap,
    fs, io,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};
use rustix::{
    io::Errno,
    mount::{MountFlags, mount},
};

const TRACEFS: &str = "/sys/kernel/tracing";
const DEBUGFS_TRACING: &str = "/sys/kernel/debug/tracing";

/// The tracefs root, mounting it at `/sys/kernel/tracing` when no mount is found.
pub fn root() -> Result<PathBuf> {
    for candidate in [TRACEFS, DEBUGFS_TRACING] {
        match fs::metadata(Path::new(candidate).join("events")) {
            Ok(events) if events.is_dir() => return Ok(candidate.into()),
            Err(error) if error.kind() == io::ErrorKind::PermissionDenied => bail!(
                "cannot read tracefs ({candidate}: permission denied): tracer needs CAP_DAC_READ_SEARCH to read the tracepoints' formats there"
            ),
            _ => {}
        }
    }
    match mount("nodev", TRACEFS, "tracefs", MountFlags::empty(), None) {
        Ok(()) => Ok(TRACEFS.into()),
        Err(Errno::PERM) => bail!(
            "tracefs is not mounted: mount it (mount -t tracefs nodev {TRACEFS}) or give tracer CAP_SYS_ADMIN to mount it"
        ),
        Err(error) => Err(error)
            .with_context(|| format!("tracefs is not mounted and mounting it on {TRACEFS} failed")),
    }
}

/// One field of a tracepoint record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    pub offset: u16,
    pub size: u16,
}

/// The fields of a tracepoint record by name (array fields without their `[N]`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TracepointFormat {
    fields: HashMap<String, Field>,
}

impl TracepointFormat {
    /// Reads `events/CATEGORY/NAME/format` under the tracefs root.
    pub fn read(tracefs: &Path, category: &str, name: &str) -> Result<Self> {
        let path = tracefs
            .join("events")
            .join(category)
            .join(name)
            .join("format");
        if !path.exists() {
            bail!(
                "this kernel has no {category}:{name} tracepoint ({} is missing)",
                path.display()
            );
        }
        let text =
            fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("cannot parse {}", path.display()))
    }

    /// Parses lines such as
    /// `field:__u8 saddr[4];<TAB>offset:32;<TAB>size:4;<TAB>signed:0;`.
    pub fn parse(text: &str) -> Result<Self> {
        let mut fields = HashMap::new();
        for line in text
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("field:"))
        {
            let mut declaration = None;
            let mut offset = None;
            let mut size = None;
            for part in line.split(';').map(str::trim) {
                if let Some(decl) = part.strip_prefix("field:") {
                    declaration = Some(decl);
                } else if let Some(value) = part.strip_prefix("offset:") {
                    offset = value.parse().ok();
                } else if let Some(value) = part.strip_prefix("size:") {
                    size = value.parse().ok();
                }
            }
            let (Some(declaration), Some(offset), Some(size)) = (declaration, offset, size) else {
                bail!("malformed field line: {line}");
            };
            let name = declaration
                .rsplit(|c: char| c.is_whitespace() || c == '*')
                .next()
                .and_then(|n| n.split('[').next())
                .filter(|n| !n.is_empty())
                .with_context(|| format!("field without a name: {line}"))?;
            fields.insert(name.to_owned(), Field { offset, size });
        }
        if fields.is_empty() {
            bail!("no fields found");
        }
        Ok(Self { fields })
    }

    pub fn field(&self, name: &str) -> Option<Field> {
        self.fields.get(name).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INET_SOCK_SET_STATE_6_18: &str = "name: inet_sock_set_state
ID: 2287
format:
	field:unsigned short common_type;	offset:0;	size:2;	signed:0;
	field:unsigned char common_flags;	offset:2;	size:1;	signed:0;
	field:unsigned char common_preempt_count;	offset:3;	size:1;	signed:0;
	field:int common_pid;	offset:4;	size:4;	signed:1;

	field:const void * skaddr;	offset:8;	size:8;	signed:0;
	field:int oldstate;	offset:16;	size:4;	signed:1;
	field:__u16 sport;	offset:24;	size:2;	signed:0;
	field:__u8 saddr_v6[16];	offset:40;	size:16;	signed:0;

print fmt: \"family=%s\", REC->family
";

    #[test]
    fn parses_names_offsets_and_sizes() {
        let format = TracepointFormat::parse(INET_SOCK_SET_STATE_6_18).unwrap();
        assert_eq!(format.field("skaddr"), Some(Field { offset: 8, size: 8 }));
        assert_eq!(
            format.field("oldstate"),
            Some(Field {
                offset: 16,
                size: 4
            })
        );
        assert_eq!(
            format.field("sport"),
            Some(Field {
                offset: 24,
                size: 2
            })
        );
        assert_eq!(
            format.field("saddr_v6"),
            Some(Field {
                offset: 40,
                size: 16
            })
        );
        assert_eq!(
            format.field("common_pid"),
            Some(Field { offset: 4, size: 4 })
        );
        assert_eq!(format.field("family"), None);
    }

    #[test]
    fn rejects_text_without_fields() {
        assert!(TracepointFormat::parse("name: x\nformat:\n").is_err());
        assert!(TracepointFormat::parse("field:int x;\toffset:zero;\tsize:4;").is_err());
    }

    #[test]
    fn reads_the_running_kernels_format() {
        let root = root().unwrap();
        let format = TracepointFormat::read(&root, "sock", "inet_sock_set_state").unwrap();
        assert_eq!(format.field("skaddr").map(|f| f.size), Some(8));
        let missing = TracepointFormat::read(&root, "sock", "no_such_tracepoint").unwrap_err();
        assert!(
            missing
                .to_string()
                .contains("no sock:no_such_tracepoint tracepoint")
        );
    }
}
