//! Which workload a connection belongs to: the kernel names the socket's cgroup by its
//! id; this stage finds its path ([`cgroups`]), from which [`container`] reads the
//! container and the pod. It runs between decoding and the correlator, so event lines
//! and records name the same cgroup.

pub mod cgroups;
pub mod container;
pub mod cri;

pub use self::{
    cgroups::CgroupPaths,
    container::{Container, Pod},
};
