//! Free loopback ports. The kernel picks a port that is free now; a small race with
//! other processes remains, which tests accept.

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::Mutex;

static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A TCP port on 127.0.0.1 that is free and not handed out before by this process.
pub fn free_port() -> u16 {
    let mut handed = HANDED_OUT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let handed = handed.get_or_insert_with(HashSet::new);
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map(|addr| addr.port())
            .expect("the kernel hands out a loopback port");
        if handed.insert(port) {
            return port;
        }
    }
}
