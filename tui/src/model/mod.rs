//! What the TUI knows: the topology (from the collector's watch streams) and the cluster (from
//! the operator watch). Both change only by applying what the master streams.
pub mod cluster;
pub mod domain;
pub mod topology;

#[derive(Debug, Default)]
pub struct Model {
    pub topology: topology::Topology,
    pub cluster: cluster::Cluster,
}
