//! Names of the eBPF programs: each is the name of a function in `tracer-ebpf`, and the
//! daemon finds the program by it. A unit test in the daemon checks both sides agree.

// Softirq tracking (`context`): before every hook.
pub const SOFTIRQ_ENTRY: &str = "softirq_entry";
pub const SOFTIRQ_EXIT: &str = "softirq_exit";

// State changes.
pub const INET_SOCK_SET_STATE: &str = "inet_sock_set_state";
pub const INET_SOCK_SET_STATE_NESTED: &str = "inet_sock_set_state_nested";
pub const INET_SK_STATE_STORE_KPROBE: &str = "inet_sk_state_store_kprobe";
pub const INET_SK_SET_STATE_KPROBE: &str = "inet_sk_set_state_kprobe";
pub const INET_SK_STATE_STORE_FENTRY: &str = "inet_sk_state_store_fentry";
pub const INET_SK_SET_STATE_FENTRY: &str = "inet_sk_set_state_fentry";

// Keepalive.
pub const TIMER_EXPIRE_ENTRY: &str = "timer_expire_entry";
pub const TIMER_EXPIRE_EXIT: &str = "timer_expire_exit";
pub const TCP_KEEPALIVE_TIMER_KPROBE: &str = "tcp_keepalive_timer_kprobe";
pub const TCP_KEEPALIVE_TIMER_KRETPROBE: &str = "tcp_keepalive_timer_kretprobe";
pub const TCP_KEEPALIVE_TIMER_FENTRY: &str = "tcp_keepalive_timer_fentry";
pub const TCP_KEEPALIVE_TIMER_FEXIT: &str = "tcp_keepalive_timer_fexit";

// Resets and retransmits.
pub const TCP_SEND_RESET: &str = "tcp_send_reset";
pub const TCP_RECEIVE_RESET: &str = "tcp_receive_reset";
pub const TCP_RETRANSMIT_SKB: &str = "tcp_retransmit_skb";
pub const TCP_RETRANSMIT_SYNACK: &str = "tcp_retransmit_synack";

// Data.
pub const SOCK_SEND_LENGTH: &str = "sock_send_length";
pub const SOCK_RECV_LENGTH: &str = "sock_recv_length";
pub const TCP_PROBE: &str = "tcp_probe";
pub const TCP_SENDMSG_KPROBE: &str = "tcp_sendmsg_kprobe";
pub const TCP_CLEANUP_RBUF_KPROBE: &str = "tcp_cleanup_rbuf_kprobe";
pub const TCP_SENDMSG_FENTRY: &str = "tcp_sendmsg_fentry";
pub const TCP_CLEANUP_RBUF_FENTRY: &str = "tcp_cleanup_rbuf_fentry";

// Timewait sockets in FIN_WAIT2.
pub const TCP_TIMEWAIT_STATE_PROCESS_KPROBE: &str = "tcp_timewait_state_process_kprobe";

// Accept.
pub const INET_CSK_ACCEPT_KRETPROBE: &str = "inet_csk_accept_kretprobe";

// TLS libraries (uprobes, attached per library file).
pub const SSL_HANDSHAKE_ENTRY: &str = "ssl_handshake_entry";
pub const SSL_READ_ENTRY: &str = "ssl_read_entry";
pub const SSL_WRITE_ENTRY: &str = "ssl_write_entry";
pub const SSL_READ_EX_ENTRY: &str = "ssl_read_ex_entry";
pub const SSL_WRITE_EX_ENTRY: &str = "ssl_write_ex_entry";
pub const SSL_CALL_RETURN: &str = "ssl_call_return";
pub const SSL_FREE_ENTRY: &str = "ssl_free_entry";

// The benchmark's floor (`cargo xtask bench`): never attached by the daemon.
pub const FLOOR: &str = "floor";
