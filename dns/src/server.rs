//! The DNS server: UDP and TCP listeners on one address, authoritative answers
//! for the cluster domain from `Records` (kept current by the Service and
//! Endpoints informers), every other name forwarded upstream.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use client::Client;
use client::runtime::{Change, Informer, SharedInformers};
use proto::core::v1::{Endpoints, Service};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use crate::Error;
use crate::config::Config;
use crate::forward::{Transport, forward, read_framed, write_framed};
use crate::records::{Lookup, Records};
use crate::sockets;
use crate::wire::{CLASS_ANY, CLASS_IN, HEADER_LEN, Message, Rcode, Record};

/// Classic DNS limit for UDP answers to clients without EDNS.
const PLAIN_UDP_LIMIT: usize = 512;
/// The UDP size advertised and honoured with EDNS (the 2020 DNS flag day value:
/// no IP fragmentation on ordinary paths).
const EDNS_UDP_LIMIT: u16 = 1232;
/// Forwarded queries in flight at once; beyond, clients get SERVFAIL at once.
const MAX_FORWARDS: usize = 1024;
/// An idle TCP client is closed after this long (RFC 7766 suggests seconds).
const TCP_IDLE: Duration = Duration::from_secs(10);

/// Counts of answers since start, for a caller's /metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Answered from the cluster's records (including NXDOMAIN and no data).
    pub authoritative: u64,
    pub nxdomain: u64,
    /// Answered by an upstream.
    pub forwarded: u64,
    pub servfail: u64,
}

#[derive(Default)]
struct Counters {
    authoritative: AtomicU64,
    nxdomain: AtomicU64,
    forwarded: AtomicU64,
    servfail: AtomicU64,
}

struct State {
    records: RwLock<Records>,
    /// Both informers listed and their objects applied: until then names in the
    /// domain get SERVFAIL, so no client caches an NXDOMAIN for a Service that
    /// exists.
    synced: AtomicBool,
    upstreams: Vec<SocketAddr>,
    upstream_timeout: Duration,
    counters: Counters,
}

/// What the owner of a running server can look at.
#[derive(Clone)]
pub struct Status {
    state: Arc<State>,
}

impl Status {
    /// Whether the records reflect a complete list of Services and Endpoints.
    pub fn synced(&self) -> bool {
        self.state.synced.load(Ordering::Acquire)
    }

    pub fn service_count(&self) -> usize {
        self.state.read_records().service_count()
    }

    pub fn counts(&self) -> Counts {
        let c = &self.state.counters;
        Counts {
            authoritative: c.authoritative.load(Ordering::Relaxed),
            nxdomain: c.nxdomain.load(Ordering::Relaxed),
            forwarded: c.forwarded.load(Ordering::Relaxed),
            servfail: c.servfail.load(Ordering::Relaxed),
        }
    }
}

pub struct Server {
    udp: Arc<UdpSocket>,
    tcp: TcpListener,
    local_addr: SocketAddr,
    state: Arc<State>,
    services: Arc<Informer<Service>>,
    endpoints: Arc<Informer<Endpoints>>,
    service_changes: mpsc::UnboundedReceiver<Change<Service>>,
    endpoints_changes: mpsc::UnboundedReceiver<Change<Endpoints>>,
    /// Set when the server made its own informers (`bind_with_client`).
    _own_informers: Option<SharedInformers>,
}

enum Reply {
    Answer(Vec<u8>),
    Forward(Message),
    Ignore,
}

impl Server {
    /// Binds UDP and TCP on `config.listen` and follows Services and Endpoints
    /// through the process's shared informers (kube-proxy's, so the kinds are
    /// watched once). Answers start with `run`.
    pub async fn bind(config: Config, informers: &SharedInformers) -> Result<Server, Error> {
        Server::bind_with_informers(config, informers.get::<Service>(), informers.get::<Endpoints>()).await
    }

    /// As `bind`, from informers the caller runs (of every namespace).
    pub async fn bind_with_informers(
        config: Config,
        services: Arc<Informer<Service>>,
        endpoints: Arc<Informer<Endpoints>>,
    ) -> Result<Server, Error> {
        let domain = config.domain_name()?;
        let (udp, tcp, local_addr) = bind_both(config.listen, config.free_bind).await?;
        let service_changes = services.subscribe();
        let endpoints_changes = endpoints.subscribe();
        let state = Arc::new(State {
            records: RwLock::new(Records::new(&domain, config.ttl)),
            synced: AtomicBool::new(false),
            upstreams: config.upstreams,
            upstream_timeout: config.upstream_timeout,
            counters: Counters::default(),
        });
        tracing::info!(address = %local_addr, domain = %domain, upstreams = ?state.upstreams, "cluster DNS listening");
        Ok(Server {
            udp: Arc::new(udp),
            tcp,
            local_addr,
            state,
            services,
            endpoints,
            service_changes,
            endpoints_changes,
            _own_informers: None,
        })
    }

    /// As `bind`, with informers of its own on `client`.
    pub async fn bind_with_client(config: Config, client: &Client) -> Result<Server, Error> {
        let informers = SharedInformers::new(client);
        let mut server = Server::bind(config, &informers).await?;
        server._own_informers = Some(informers);
        Ok(server)
    }

    /// The address actually bound (the port chosen when `listen` had port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn status(&self) -> Status {
        Status { state: self.state.clone() }
    }

    /// Serves until `shutdown` resolves; then stops every task it started.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        let Server { udp, tcp, state, services, endpoints, service_changes, endpoints_changes, _own_informers, .. } =
            self;
        let mut tasks = JoinSet::new();
        tasks.spawn(keep_current(state.clone(), services, endpoints, service_changes, endpoints_changes));
        let forwards = Arc::new(Semaphore::new(MAX_FORWARDS));
        let mut buf = vec![0u8; 65535];
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                received = udp.recv_from(&mut buf) => match received {
                    Ok((n, peer)) => serve_udp(&state, &udp, &forwards, &mut tasks, &buf[..n], peer).await,
                    // A transient error (e.g. ENOMEM) must not stop the server.
                    Err(e) => tracing::warn!(error = %e, "receiving a UDP query failed"),
                },
                accepted = tcp.accept() => match accepted {
                    Ok((stream, _)) => { tasks.spawn(serve_tcp(state.clone(), stream)); }
                    Err(e) => {
                        tracing::warn!(error = %e, "accepting a TCP client failed");
                        // EMFILE and the like: give the system a moment.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        tasks.shutdown().await;
        tracing::info!("cluster DNS stopped");
        Ok(())
    }
}

/// TCP on `listen`, and UDP on the same port (when `listen` has port 0 the TCP
/// port is free for TCP only; retried a few times if UDP has it taken).
async fn bind_both(listen: SocketAddr, free_bind: bool) -> Result<(UdpSocket, TcpListener, SocketAddr), Error> {
    let bind_error = |protocol: &'static str, address: SocketAddr| {
        move |source: std::io::Error| Error::Bind { protocol, address, source }
    };
    let mut attempts = 0;
    loop {
        let tcp = sockets::tcp_listener(listen, free_bind).map_err(bind_error("TCP", listen))?;
        let bound = tcp.local_addr().map_err(bind_error("TCP", listen))?;
        match sockets::udp_socket(bound, free_bind) {
            Ok(udp) => return Ok((udp, tcp, bound)),
            Err(e) if listen.port() == 0 && e.kind() == std::io::ErrorKind::AddrInUse && attempts < 10 => {
                attempts += 1;
            }
            Err(e) => return Err(bind_error("UDP", bound)(e)),
        }
    }
}

/// Applies informer changes to the records; marks the state synced once both
/// kinds have listed and what they listed is applied.
async fn keep_current(
    state: Arc<State>,
    services: Arc<Informer<Service>>,
    endpoints: Arc<Informer<Endpoints>>,
    mut service_changes: mpsc::UnboundedReceiver<Change<Service>>,
    mut endpoints_changes: mpsc::UnboundedReceiver<Change<Endpoints>>,
) {
    let listed = async {
        services.wait_synced().await;
        endpoints.wait_synced().await;
    };
    tokio::pin!(listed);
    let mut synced = false;
    loop {
        tokio::select! {
            biased;
            Some(change) = service_changes.recv() => apply_service(&state, change),
            Some(change) = endpoints_changes.recv() => apply_endpoints(&state, change),
            _ = &mut listed, if !synced => {
                // The informers sent their lists before saying they synced: what
                // is still queued is part of the lists.
                while let Ok(change) = service_changes.try_recv() {
                    apply_service(&state, change);
                }
                while let Ok(change) = endpoints_changes.try_recv() {
                    apply_endpoints(&state, change);
                }
                synced = true;
                state.synced.store(true, Ordering::Release);
                tracing::info!(services = state.read_records().service_count(), "cluster DNS records synced");
            }
            else => break,
        }
    }
}

fn apply_service(state: &State, change: Change<Service>) {
    let mut records = state.write_records();
    match change {
        Change::Added(s) | Change::Updated { new: s, .. } => records.upsert_service(&s),
        Change::Deleted(s) => records.remove_service(&s),
    }
}

fn apply_endpoints(state: &State, change: Change<Endpoints>) {
    let mut records = state.write_records();
    match change {
        Change::Added(e) | Change::Updated { new: e, .. } => records.upsert_endpoints(&e),
        Change::Deleted(e) => records.remove_endpoints(&e),
    }
}

async fn serve_udp(
    state: &Arc<State>,
    udp: &Arc<UdpSocket>,
    forwards: &Arc<Semaphore>,
    tasks: &mut JoinSet<()>,
    query: &[u8],
    peer: SocketAddr,
) {
    let reply = match state.respond(query, Transport::Udp) {
        Reply::Answer(bytes) => bytes,
        Reply::Ignore => return,
        Reply::Forward(message) => match forwards.clone().try_acquire_owned() {
            Ok(permit) => {
                let (state, udp, query) = (state.clone(), udp.clone(), query.to_vec());
                tasks.spawn(async move {
                    let answer = state.forward(&query, &message, Transport::Udp).await;
                    if let Err(e) = udp.send_to(&answer, peer).await {
                        tracing::debug!(%peer, error = %e, "sending a forwarded answer failed");
                    }
                    drop(permit);
                });
                return;
            }
            Err(_) => {
                tracing::warn!("too many forwarded queries in flight; answering SERVFAIL");
                state.servfail(&message)
            }
        },
    };
    if let Err(e) = udp.send_to(&reply, peer).await {
        tracing::debug!(%peer, error = %e, "sending an answer failed");
    }
}

/// Answers the queries of one TCP client in turn until it closes or idles.
async fn serve_tcp(state: Arc<State>, mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    loop {
        let query = match tokio::time::timeout(TCP_IDLE, read_framed(&mut stream)).await {
            Ok(Ok(query)) => query,
            // Closed, broken or idle: the client reconnects if it needs to.
            _ => return,
        };
        let answer = match state.respond(&query, Transport::Tcp) {
            Reply::Answer(bytes) => bytes,
            Reply::Forward(message) => state.forward(&query, &message, Transport::Tcp).await,
            Reply::Ignore => return,
        };
        if write_framed(&mut stream, &answer).await.is_err() {
            return;
        }
    }
}

/// The largest answer the client takes: 512 bytes over UDP, more with EDNS.
fn reply_limit(query: &Message, transport: Transport) -> usize {
    match (transport, query.opt()) {
        (Transport::Tcp, _) => usize::from(u16::MAX),
        (Transport::Udp, None) => PLAIN_UDP_LIMIT,
        (Transport::Udp, Some(opt)) => usize::from(opt.class.clamp(PLAIN_UDP_LIMIT as u16, EDNS_UDP_LIMIT)),
    }
}

impl State {
    fn read_records(&self) -> std::sync::RwLockReadGuard<'_, Records> {
        self.records.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write_records(&self) -> std::sync::RwLockWriteGuard<'_, Records> {
        self.records.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn count(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The answer to one query, or that it must be forwarded.
    fn respond(&self, bytes: &[u8], transport: Transport) -> Reply {
        let query = match Message::decode(bytes) {
            Ok(query) => query,
            Err(e) => {
                // A header we can answer to, from a client (not a stray response).
                if bytes.len() < HEADER_LEN || bytes[2] & 0x80 != 0 {
                    return Reply::Ignore;
                }
                tracing::debug!(error = %e, "malformed query");
                let mut header = bytes[..HEADER_LEN].to_vec();
                // QR set, opcode and RD kept, everything else clear; FORMERR; no sections.
                header[2] = 0x80 | (header[2] & 0x79);
                header[3] = 0x01;
                header[4..].fill(0);
                return Reply::Answer(header);
            }
        };
        if query.header.response {
            return Reply::Ignore;
        }
        if query.header.opcode != 0 {
            return self.encode_reply(&query, Message::response_to(&query, Rcode::NotImp), transport);
        }
        let [question] = query.questions.as_slice() else {
            return self.encode_reply(&query, Message::response_to(&query, Rcode::FormErr), transport);
        };
        let lookup = self.read_records().lookup(&question.name, question.qtype);
        let mut response = Message::response_to(&query, Rcode::NoError);
        match lookup {
            Lookup::Outside => {
                if self.upstreams.is_empty() {
                    return Reply::Answer(self.servfail(&query));
                }
                return Reply::Forward(query);
            }
            _ if question.qclass != CLASS_IN && question.qclass != CLASS_ANY => {
                response.set_rcode(Rcode::Refused);
            }
            _ if !self.synced.load(Ordering::Acquire) => {
                return Reply::Answer(self.servfail(&query));
            }
            Lookup::NxDomain => {
                response.set_rcode(Rcode::NxDomain);
                response.header.authoritative = true;
                response.authority.push(self.read_records().soa());
                self.count(&self.counters.nxdomain);
            }
            Lookup::Found { answers, additional } => {
                response.header.authoritative = true;
                if answers.is_empty() {
                    response.authority.push(self.read_records().soa());
                }
                response.answers = answers;
                response.additional = additional;
            }
        }
        self.count(&self.counters.authoritative);
        self.encode_reply(&query, response, transport)
    }

    /// Encodes a response within the client's size limit, with EDNS when the
    /// query had it.
    fn encode_reply(&self, query: &Message, mut response: Message, transport: Transport) -> Reply {
        response.header.recursion_available = !self.upstreams.is_empty();
        let limit = reply_limit(query, transport);
        if query.opt().is_some() {
            response.additional.push(Record::opt(EDNS_UDP_LIMIT));
        }
        match response.encode_within(limit) {
            Ok(bytes) => Reply::Answer(bytes),
            Err(e) => {
                tracing::warn!(error = %e, "cannot encode an answer");
                Reply::Answer(self.servfail(query))
            }
        }
    }

    fn servfail(&self, query: &Message) -> Vec<u8> {
        self.count(&self.counters.servfail);
        let mut response = Message::response_to(query, Rcode::ServFail);
        response.header.recursion_available = !self.upstreams.is_empty();
        // Header and question only: always encodes.
        response.encode().unwrap_or_default()
    }

    async fn forward(&self, bytes: &[u8], query: &Message, transport: Transport) -> Vec<u8> {
        match forward(bytes, &self.upstreams, self.upstream_timeout, transport).await {
            Some(answer) => {
                self.count(&self.counters.forwarded);
                let limit = reply_limit(query, transport);
                if answer.len() <= limit {
                    return answer;
                }
                // The upstream answered over TCP (or assumed a larger size): the
                // client over UDP gets TC and asks again over TCP.
                match Message::decode(&answer).and_then(|m| m.encode_within(limit)) {
                    Ok(truncated) => truncated,
                    Err(e) => {
                        tracing::debug!(error = %e, "cannot truncate an upstream answer; SERVFAIL");
                        self.servfail(query)
                    }
                }
            }
            None => {
                let name = query.questions.first().map(|q| q.name.to_string()).unwrap_or_default();
                tracing::debug!(%name, "no upstream answered; SERVFAIL");
                self.servfail(query)
            }
        }
    }
}
