//! Who accepted a connection: a kretprobe on `inet_csk_accept`, which returns the new
//! socket in the accepting process's context. (No tracepoint fires on accept; without
//! kprobes the daemon falls back to the listener's owner.)

use aya_ebpf::{macros::kretprobe, programs::RetProbeContext};
use tracer_common::{Accepted, EventKind};

use crate::{
    kernel::Sock,
    output::{EventSocket, emit},
    selector::{Candidate, select},
};

#[kretprobe]
pub fn inet_csk_accept_kretprobe(ctx: RetProbeContext) -> u32 {
    let sk = ctx.ret::<u64>();
    if sk == 0 {
        return 0;
    }
    let sock = Sock::read(sk);
    if let Some(endpoints) =
        select(Candidate::Socket(&sock)).and_then(|ports| sock.endpoints(ports))
    {
        emit(
            EventKind::Accepted,
            EventSocket::Full(sk),
            Accepted { endpoints },
        );
    }
    0
}
