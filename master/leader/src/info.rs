//! `MasterInfo` as Mesos writes it, as JSON, into a contender znode (`json.info_<sequence>`):
//! what Mesos agents, schedulers, Marathon and tools read to find the leading master.
use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

/// The Mesos version whose APIs Orca's masters speak (what Mesos tools compare against).
pub const MESOS_VERSION: &str = "1.11.0";

/// Mesos `Address`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    pub port: u16,
}

/// Mesos `MasterInfo.Capability`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capability {
    #[serde(rename = "type")]
    pub kind: String,
}

/// Where Orca's gRPC doors (agent link, scheduler, operator, collector) listen. Not a Mesos
/// field: Mesos parsers skip keys their `MasterInfo` does not have.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrpcAddress {
    pub ip: String,
    pub port: u16,
}

/// Mesos `MasterInfo` in its JSON form.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MasterInfo {
    pub id: String,
    /// The IPv4 address as Mesos encodes it: the address's network-order bytes read as a
    /// host-order integer (MESOS-1201), so 127.0.0.1 is 16777343 on x86.
    pub ip: u32,
    pub port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Address>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<Capability>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orca_grpc: Option<GrpcAddress>,
}

/// Mesos's integer form of an IPv4 address (0 for IPv6, whose text is in `address.ip`).
pub fn mesos_ip(ip: IpAddr) -> u32 {
    match ip {
        IpAddr::V4(v4) => u32::from_ne_bytes(v4.octets()),
        IpAddr::V6(_) => 0,
    }
}

impl MasterInfo {
    /// The info of a master serving HTTP on `http` and gRPC on `grpc`, known as `hostname`.
    pub fn new(id: String, hostname: String, http: SocketAddr, grpc: SocketAddr) -> Self {
        let ip = http.ip();
        MasterInfo {
            id,
            ip: mesos_ip(ip),
            port: http.port(),
            pid: Some(format!("master@{}", http)),
            hostname: Some(hostname.clone()),
            version: Some(MESOS_VERSION.to_owned()),
            address: Some(Address {
                hostname: Some(hostname),
                ip: Some(ip.to_string()),
                port: http.port(),
            }),
            capabilities: ["AGENT_UPDATE", "AGENT_DRAINING", "QUOTA_V2"]
                .iter()
                .map(|kind| Capability {
                    kind: (*kind).to_owned(),
                })
                .collect(),
            orca_grpc: Some(GrpcAddress {
                ip: grpc.ip().to_string(),
                port: grpc.port(),
            }),
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("MasterInfo serializes")
    }

    pub fn from_json(data: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(data)
    }

    /// The IP the master serves HTTP on: `address.ip`, else the Mesos integer.
    pub fn http_ip(&self) -> IpAddr {
        self.address
            .as_ref()
            .and_then(|a| a.ip.as_deref())
            .and_then(|ip| ip.parse().ok())
            .unwrap_or_else(|| IpAddr::from(self.ip.to_ne_bytes()))
    }

    /// `host:port` of the master's HTTP API (Mesos's `hostname:port` when it has a hostname,
    /// as Mesos's redirects use).
    pub fn http_authority(&self) -> String {
        match &self.hostname {
            Some(h) if !h.is_empty() => format!("{h}:{}", self.port),
            _ => SocketAddr::new(self.http_ip(), self.port).to_string(),
        }
    }

    pub fn http_addr(&self) -> SocketAddr {
        SocketAddr::new(self.http_ip(), self.port)
    }

    /// Where the master's gRPC doors listen (`None` for a master that is not Orca's).
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        let grpc = self.orca_grpc.as_ref()?;
        Some(SocketAddr::new(grpc.ip.parse().ok()?, grpc.port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_info_is_the_json_mesos_writes() {
        let info = MasterInfo::new(
            "m1".into(),
            "master1".into(),
            "127.0.0.1:5050".parse().unwrap(),
            "127.0.0.1:7070".parse().unwrap(),
        );
        let json: serde_json::Value = serde_json::from_slice(&info.to_json()).unwrap();
        if cfg!(target_endian = "little") {
            assert_eq!(json["ip"], 16777343);
        }
        assert_eq!(json["port"], 5050);
        assert_eq!(json["pid"], "master@127.0.0.1:5050");
        assert_eq!(json["hostname"], "master1");
        assert_eq!(json["version"], MESOS_VERSION);
        assert_eq!(
            json["address"],
            serde_json::json!({"hostname": "master1", "ip": "127.0.0.1", "port": 5050})
        );
        assert_eq!(json["capabilities"][0]["type"], "AGENT_UPDATE");
        let back = MasterInfo::from_json(&info.to_json()).unwrap();
        assert_eq!(back, info);
        assert_eq!(back.http_addr(), "127.0.0.1:5050".parse().unwrap());
        assert_eq!(back.grpc_addr(), Some("127.0.0.1:7070".parse().unwrap()));
        // A Mesos master's info (no Orca field, only the integer IP) reads too.
        let mesos = br#"{"id":"x","ip":16777343,"port":5050,"pid":"master@127.0.0.1:5050"}"#;
        let info = MasterInfo::from_json(mesos).unwrap();
        if cfg!(target_endian = "little") {
            assert_eq!(info.http_addr(), "127.0.0.1:5050".parse().unwrap());
        }
        assert_eq!(info.grpc_addr(), None);
    }
}
