//! Where the kernel programs find their data: tracepoint field offsets, read from the
//! tracepoints' `format` files, and kernel struct member offsets, read from BTF. Nothing is
//! hard-coded to one kernel build.
use std::{collections::HashMap, fs, path::Path};

use btf_rs::{Btf, Type};
use orca_ebpf_common::{ProbeConfig, config_flag};

#[derive(Debug, thiserror::Error)]
pub enum OffsetError {
    #[error(
        "cannot read tracepoint format {path}: {source}; is tracefs mounted \
         (mount -t tracefs nodev /sys/kernel/tracing) and are you root?"
    )]
    Format {
        path: String,
        source: std::io::Error,
    },
    #[error("tracepoint {tracepoint} has no field {field}; this kernel is not supported")]
    MissingField { tracepoint: String, field: String },
    #[error("kernel BTF unreadable at {path}: {message}; the kernel needs CONFIG_DEBUG_INFO_BTF")]
    Btf { path: String, message: String },
    #[error("kernel BTF has no member {member} in struct {strukt}")]
    MissingMember { strukt: String, member: String },
    #[error("kernel BTF has no value {value} in enum {enumeration}")]
    MissingEnumValue { enumeration: String, value: String },
}

/// The fields of one tracepoint: name -> byte offset in the record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TracepointFormat {
    pub name: String,
    pub fields: HashMap<String, u32>,
}

impl TracepointFormat {
    /// Parses the text of a tracepoint `format` file.
    pub fn parse(name: &str, text: &str) -> Self {
        let mut fields = HashMap::new();
        for line in text.lines() {
            let line = line.trim();
            let Some(rest) = line.strip_prefix("field:") else {
                continue;
            };
            let mut decl = None;
            let mut offset = None;
            for part in rest.split(';') {
                let part = part.trim();
                if let Some(value) = part.strip_prefix("offset:") {
                    offset = value.trim().parse::<u32>().ok();
                } else if decl.is_none() && !part.is_empty() && !part.contains(':') {
                    decl = Some(part);
                }
            }
            // The declaration's last word is the name, minus any array suffix.
            let (Some(decl), Some(offset)) = (decl, offset) else {
                continue;
            };
            let last = decl.split_whitespace().last().unwrap_or(decl);
            let field = last
                .split('[')
                .next()
                .unwrap_or(last)
                .trim_start_matches('*');
            fields.insert(field.to_string(), offset);
        }
        Self {
            name: name.to_string(),
            fields,
        }
    }

    pub fn offset(&self, field: &str) -> Result<u32, OffsetError> {
        self.fields
            .get(field)
            .copied()
            .ok_or_else(|| OffsetError::MissingField {
                tracepoint: self.name.clone(),
                field: field.to_string(),
            })
    }
}

const TRACEFS_ROOTS: &[&str] = &["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// Makes sure tracefs is mounted (the kernel does not mount it at boot everywhere).
pub fn ensure_tracefs() -> Option<&'static str> {
    for root in TRACEFS_ROOTS {
        if Path::new(root).join("events").is_dir() {
            return Some(root);
        }
    }
    let root = TRACEFS_ROOTS[0];
    let mounted = nix::mount::mount(
        Some("nodev"),
        root,
        Some("tracefs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    );
    match mounted {
        Ok(()) => Some(root),
        Err(err) => {
            tracing::warn!(%err, "tracefs is not mounted and mounting it failed");
            None
        }
    }
}

pub fn read_format(category: &str, name: &str) -> Result<TracepointFormat, OffsetError> {
    let root = ensure_tracefs().unwrap_or(TRACEFS_ROOTS[0]);
    let path = format!("{root}/events/{category}/{name}/format");
    let text = fs::read_to_string(&path).map_err(|source| OffsetError::Format {
        path: path.clone(),
        source,
    })?;
    Ok(TracepointFormat::parse(name, &text))
}

const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Byte offset of a (possibly nested, dot-separated) member of a kernel struct, looking through
/// anonymous structs and unions as C does.
pub fn btf_member_offset(btf: &Btf, strukt: &str, path: &str) -> Result<u32, OffsetError> {
    let missing = || OffsetError::MissingMember {
        strukt: strukt.to_string(),
        member: path.to_string(),
    };
    let mut current = find_struct(btf, strukt).ok_or_else(missing)?;
    let mut total_bits = 0u32;
    let parts: Vec<&str> = path.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        let (bits, member_type) = find_member(btf, &current, part).ok_or_else(missing)?;
        total_bits += bits;
        if i + 1 < parts.len() {
            current = resolve_struct(btf, member_type).ok_or_else(missing)?;
        }
    }
    Ok(total_bits / 8)
}

/// The value of `name` in the kernel's `enum enumeration`.
pub fn btf_enum_value(btf: &Btf, enumeration: &str, name: &str) -> Result<u32, OffsetError> {
    btf.resolve_types_by_name(enumeration)
        .ok()
        .into_iter()
        .flatten()
        .find_map(|t| match t {
            Type::Enum(e) => e
                .members
                .iter()
                .find(|m| btf.resolve_name(*m).is_ok_and(|n| n == name))
                .map(|m| m.val()),
            _ => None,
        })
        .ok_or_else(|| OffsetError::MissingEnumValue {
            enumeration: enumeration.to_string(),
            value: name.to_string(),
        })
}

fn find_struct(btf: &Btf, name: &str) -> Option<btf_rs::Struct> {
    btf.resolve_types_by_name(name)
        .ok()?
        .into_iter()
        .find_map(|t| match t {
            Type::Struct(s) if !s.members.is_empty() => Some(s),
            _ => None,
        })
}

/// Follows typedefs and qualifiers to a struct or union.
fn resolve_struct(btf: &Btf, mut t: Type) -> Option<btf_rs::Struct> {
    for _ in 0..16 {
        match t {
            Type::Struct(s) | Type::Union(s) => return Some(s),
            Type::Typedef(_) | Type::Const(_) | Type::Volatile(_) | Type::Restrict(_) => {
                t = btf.resolve_chained_type(t.as_btf_type()?).ok()?;
            }
            _ => return None,
        }
    }
    None
}

/// Finds `name` among the members (recursing into anonymous members); returns its bit offset
/// and type.
fn find_member(btf: &Btf, s: &btf_rs::Struct, name: &str) -> Option<(u32, Type)> {
    for member in &s.members {
        let member_name = btf.resolve_name(member).unwrap_or_default();
        let member_type = btf.resolve_chained_type(member).ok()?;
        if member_name == name {
            return Some((member.bit_offset(), member_type));
        }
        if member_name.is_empty()
            && let Some(inner) = resolve_struct(btf, member_type)
            && let Some((bits, t)) = find_member(btf, &inner, name)
        {
            return Some((member.bit_offset() + bits, t));
        }
    }
    None
}

/// Builds the load-time configuration for the kernel programs.
pub fn probe_config(netns_inum: Option<u32>) -> Result<ProbeConfig, OffsetError> {
    let sss = read_format("sock", "inet_sock_set_state")?;
    let exec = read_format("sched", "sched_process_exec")?;
    let exit = read_format("sched", "sched_process_exit")?;
    let newtask = read_format("task", "task_newtask")?;

    // Mmap: only the few types looked up are parsed (a full parse of vmlinux BTF costs tens
    // of MB of transient memory).
    let btf = Btf::from_file_with_backend(VMLINUX_BTF, btf_rs::Backend::Mmap)
        .or_else(|_| Btf::from_file(VMLINUX_BTF))
        .map_err(|e| OffsetError::Btf {
            path: VMLINUX_BTF.to_string(),
            message: e.to_string(),
        })?;

    let mut cfg = ProbeConfig {
        sss_skaddr: sss.offset("skaddr")?,
        sss_oldstate: sss.offset("oldstate")?,
        sss_newstate: sss.offset("newstate")?,
        sss_sport: sss.offset("sport")?,
        sss_dport: sss.offset("dport")?,
        sss_family: sss.offset("family")?,
        sss_protocol: sss.offset("protocol")?,
        sss_saddr: sss.offset("saddr")?,
        sss_daddr: sss.offset("daddr")?,
        sss_saddr_v6: sss.offset("saddr_v6")?,
        sss_daddr_v6: sss.offset("daddr_v6")?,
        exec_pid: exec.offset("pid")?,
        exit_pid: exit.offset("pid")?,
        exit_group_dead: 0,
        newtask_pid: newtask.offset("pid")?,
        newtask_clone_flags: newtask.offset("clone_flags")?,
        task_exit_code: btf_member_offset(&btf, "task_struct", "exit_code")?,
        task_real_parent: btf_member_offset(&btf, "task_struct", "real_parent")?,
        task_tgid: btf_member_offset(&btf, "task_struct", "tgid")?,
        tcp_bytes_sent: btf_member_offset(&btf, "tcp_sock", "bytes_sent")?,
        tcp_bytes_retrans: btf_member_offset(&btf, "tcp_sock", "bytes_retrans")?,
        tcp_bytes_received: btf_member_offset(&btf, "tcp_sock", "bytes_received")?,
        tcp_total_retrans: btf_member_offset(&btf, "tcp_sock", "total_retrans")?,
        // Moved into struct sock_common in 6.x kernels; `sk_flags` before.
        sock_flags: btf_member_offset(&btf, "sock", "__sk_common.skc_flags")
            .or_else(|_| btf_member_offset(&btf, "sock", "sk_flags"))?,
        sock_done_bit: btf_enum_value(&btf, "sock_flags", "SOCK_DONE")?,
        sock_state: btf_member_offset(&btf, "sock", "__sk_common.skc_state")?,
        sock_num: btf_member_offset(&btf, "sock", "__sk_common.skc_num")?,
        sock_dport: btf_member_offset(&btf, "sock", "__sk_common.skc_dport")?,
        sock_family: btf_member_offset(&btf, "sock", "__sk_common.skc_family")?,
        sock_daddr: btf_member_offset(&btf, "sock", "__sk_common.skc_daddr")?,
        sock_rcv_saddr: btf_member_offset(&btf, "sock", "__sk_common.skc_rcv_saddr")?,
        sock_v6_daddr: btf_member_offset(&btf, "sock", "__sk_common.skc_v6_daddr")?,
        sock_v6_rcv_saddr: btf_member_offset(&btf, "sock", "__sk_common.skc_v6_rcv_saddr")?,
        sock_net: 0,
        net_inum: 0,
        netns_inum: 0,
        flags: 0,
    };
    if let Ok(offset) = exit.offset("group_dead") {
        cfg.exit_group_dead = offset;
        cfg.flags |= config_flag::EXIT_HAS_GROUP_DEAD;
    }
    if let Some(inum) = netns_inum {
        cfg.sock_net = btf_member_offset(&btf, "sock", "__sk_common.skc_net")?;
        cfg.net_inum = btf_member_offset(&btf, "net", "ns.inum")?;
        cfg.netns_inum = inum;
        cfg.flags |= config_flag::NETNS_FILTER;
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "name: inet_sock_set_state
ID: 1422
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:const void * skaddr;\toffset:8;\tsize:8;\tsigned:0;
\tfield:int oldstate;\toffset:16;\tsize:4;\tsigned:1;
\tfield:__u8 saddr_v6[16];\toffset:40;\tsize:16;\tsigned:0;
\tfield:__data_loc char[] filename;\toffset:8;\tsize:4;\tsigned:0;

print fmt: \"family=%s\"";

    #[test]
    fn parses_format_fields() {
        let f = TracepointFormat::parse("inet_sock_set_state", SAMPLE);
        assert_eq!(f.offset("skaddr").unwrap(), 8);
        assert_eq!(f.offset("oldstate").unwrap(), 16);
        assert_eq!(f.offset("saddr_v6").unwrap(), 40);
        assert_eq!(f.offset("common_type").unwrap(), 0);
        assert_eq!(f.offset("filename").unwrap(), 8);
        let err = f.offset("nope").unwrap_err().to_string();
        assert!(err.contains("has no field nope"), "{err}");
    }
}
