//! The DNS wire format (RFC 1035, with SRV from RFC 2782, AAAA from RFC 3596 and
//! the EDNS OPT pseudo-record from RFC 6891): decoding any message, following
//! compression pointers safely, and encoding with name compression.
//!
//! Only the record types the cluster DNS answers with get typed data; every other
//! type keeps its raw bytes, so a decoded message always re-encodes.

use std::collections::HashMap;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// A record or query type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecordType(pub u16);

impl RecordType {
    pub const A: RecordType = RecordType(1);
    pub const NS: RecordType = RecordType(2);
    pub const CNAME: RecordType = RecordType(5);
    pub const SOA: RecordType = RecordType(6);
    pub const PTR: RecordType = RecordType(12);
    pub const AAAA: RecordType = RecordType(28);
    pub const SRV: RecordType = RecordType(33);
    pub const OPT: RecordType = RecordType(41);
    pub const ANY: RecordType = RecordType(255);
}

/// The class of the Internet; the only one served.
pub const CLASS_IN: u16 = 1;
/// The ANY class a query may ask for.
pub const CLASS_ANY: u16 = 255;

/// Response codes (the 4 bits of the header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rcode {
    NoError,
    FormErr,
    ServFail,
    NxDomain,
    NotImp,
    Refused,
    Other(u8),
}

impl Rcode {
    fn to_bits(self) -> u16 {
        match self {
            Rcode::NoError => 0,
            Rcode::FormErr => 1,
            Rcode::ServFail => 2,
            Rcode::NxDomain => 3,
            Rcode::NotImp => 4,
            Rcode::Refused => 5,
            Rcode::Other(code) => u16::from(code & 0x0f),
        }
    }

    fn from_bits(bits: u16) -> Rcode {
        match bits & 0x0f {
            0 => Rcode::NoError,
            1 => Rcode::FormErr,
            2 => Rcode::ServFail,
            3 => Rcode::NxDomain,
            4 => Rcode::NotImp,
            5 => Rcode::Refused,
            other => Rcode::Other(other as u8),
        }
    }
}

/// A domain name as a list of labels (raw bytes: labels may hold any octet), without
/// the root label. The root name has no labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Name(Vec<Vec<u8>>);

/// Longest encoded name (RFC 1035 §2.3.4).
const MAX_NAME_BYTES: usize = 255;
const MAX_LABEL_BYTES: usize = 63;

impl Name {
    pub fn root() -> Name {
        Name(Vec::new())
    }

    /// Parses dotted text ("web.default.svc.cluster.local", a trailing dot is
    /// allowed). Labels are taken as written; no escapes.
    pub fn parse(text: &str) -> Result<Name, WireError> {
        let text = text.strip_suffix('.').unwrap_or(text);
        if text.is_empty() {
            return Ok(Name::root());
        }
        let labels: Vec<Vec<u8>> = text.split('.').map(|l| l.as_bytes().to_vec()).collect();
        let name = Name(labels);
        name.check()?;
        Ok(name)
    }

    pub fn from_labels(labels: Vec<Vec<u8>>) -> Result<Name, WireError> {
        let name = Name(labels);
        name.check()?;
        Ok(name)
    }

    fn check(&self) -> Result<(), WireError> {
        if self.0.iter().any(|l| l.is_empty() || l.len() > MAX_LABEL_BYTES) {
            return Err(WireError::BadName(format!("{self}: every label must be 1 to 63 bytes long")));
        }
        if self.encoded_len() > MAX_NAME_BYTES {
            return Err(WireError::BadName(format!("{self}: longer than 255 bytes encoded")));
        }
        Ok(())
    }

    fn encoded_len(&self) -> usize {
        self.0.iter().map(|l| l.len() + 1).sum::<usize>() + 1
    }

    pub fn labels(&self) -> &[Vec<u8>] {
        &self.0
    }

    /// The name in lower case as dotted text without the trailing dot, if every
    /// label is printable ASCII without dots; None for names no Kubernetes object
    /// can have (which then cannot be in the cluster domain either).
    pub fn to_lowercase_text(&self) -> Option<String> {
        let mut text = String::with_capacity(self.encoded_len());
        for (i, label) in self.0.iter().enumerate() {
            if label.iter().any(|&b| !b.is_ascii_graphic() || b == b'.') {
                return None;
            }
            if i > 0 {
                text.push('.');
            }
            text.extend(label.iter().map(|&b| char::from(b.to_ascii_lowercase())));
        }
        Some(text)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str(".");
        }
        for (i, label) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            for &b in label {
                if b.is_ascii_graphic() && b != b'.' && b != b'\\' {
                    write!(f, "{}", char::from(b))?;
                } else {
                    write!(f, "\\{b:03}")?;
                }
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    pub name: Name,
    pub qtype: RecordType,
    pub qclass: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RData {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Cname(Name),
    Ns(Name),
    Ptr(Name),
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        target: Name,
    },
    Soa {
        mname: Name,
        rname: Name,
        serial: u32,
        refresh: u32,
        retry: u32,
        expire: u32,
        minimum: u32,
    },
    /// Any other type, as its bytes (names inside stay uncompressed on re-encode
    /// only if they were so on decode; fine for the types that carry none).
    Raw(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub name: Name,
    pub rtype: RecordType,
    /// The class; for OPT, the sender's UDP payload size.
    pub class: u16,
    /// The TTL; for OPT, the extended rcode, version and flags.
    pub ttl: u32,
    pub data: RData,
}

impl Record {
    /// A record of class IN, its type taken from its data (Raw data needs `rtype`
    /// set by hand).
    pub fn new(name: Name, ttl: u32, data: RData) -> Record {
        let rtype = match &data {
            RData::A(_) => RecordType::A,
            RData::Aaaa(_) => RecordType::AAAA,
            RData::Cname(_) => RecordType::CNAME,
            RData::Ns(_) => RecordType::NS,
            RData::Ptr(_) => RecordType::PTR,
            RData::Srv { .. } => RecordType::SRV,
            RData::Soa { .. } => RecordType::SOA,
            RData::Raw(_) => RecordType(0),
        };
        Record { name, rtype, class: CLASS_IN, ttl, data }
    }

    /// An EDNS OPT pseudo-record advertising `udp_size`, with no options.
    pub fn opt(udp_size: u16) -> Record {
        Record { name: Name::root(), rtype: RecordType::OPT, class: udp_size, ttl: 0, data: RData::Raw(Vec::new()) }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Header {
    pub id: u16,
    /// Set in responses.
    pub response: bool,
    pub opcode: u8,
    pub authoritative: bool,
    pub truncated: bool,
    pub recursion_desired: bool,
    pub recursion_available: bool,
    pub rcode: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    pub header: Header,
    pub questions: Vec<Question>,
    pub answers: Vec<Record>,
    pub authority: Vec<Record>,
    pub additional: Vec<Record>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("message ends early (at byte {0})")]
    Short(usize),
    #[error("bad compression pointer at byte {0}")]
    BadPointer(usize),
    #[error("bad name: {0}")]
    BadName(String),
    #[error("record data of type {rtype} is {len} bytes, which does not fit the type")]
    BadRData { rtype: u16, len: usize },
    #[error("message would be longer than 65535 bytes")]
    TooLong,
}

/// Size of the fixed header.
pub const HEADER_LEN: usize = 12;

impl Message {
    /// A response to `query` with the same id, opcode, question and RD flag.
    pub fn response_to(query: &Message, rcode: Rcode) -> Message {
        let mut header = Header {
            id: query.header.id,
            response: true,
            opcode: query.header.opcode,
            recursion_desired: query.header.recursion_desired,
            ..Default::default()
        };
        header.rcode = rcode.to_bits() as u8;
        Message { header, questions: query.questions.clone(), ..Default::default() }
    }

    pub fn rcode(&self) -> Rcode {
        Rcode::from_bits(u16::from(self.header.rcode))
    }

    pub fn set_rcode(&mut self, rcode: Rcode) {
        self.header.rcode = rcode.to_bits() as u8;
    }

    /// The EDNS OPT record of the additional section, if any.
    pub fn opt(&self) -> Option<&Record> {
        self.additional.iter().find(|r| r.rtype == RecordType::OPT)
    }

    pub fn decode(bytes: &[u8]) -> Result<Message, WireError> {
        let mut reader = Reader { bytes, at: 0 };
        let id = reader.u16()?;
        let flags = reader.u16()?;
        let counts = [reader.u16()?, reader.u16()?, reader.u16()?, reader.u16()?];
        let header = Header {
            id,
            response: flags & 0x8000 != 0,
            opcode: ((flags >> 11) & 0x0f) as u8,
            authoritative: flags & 0x0400 != 0,
            truncated: flags & 0x0200 != 0,
            recursion_desired: flags & 0x0100 != 0,
            recursion_available: flags & 0x0080 != 0,
            rcode: (flags & 0x0f) as u8,
        };
        let mut questions = Vec::new();
        for _ in 0..counts[0] {
            let name = reader.name()?;
            let qtype = RecordType(reader.u16()?);
            let qclass = reader.u16()?;
            questions.push(Question { name, qtype, qclass });
        }
        let mut sections: [Vec<Record>; 3] = Default::default();
        for (section, &count) in sections.iter_mut().zip(&counts[1..]) {
            for _ in 0..count {
                section.push(reader.record()?);
            }
        }
        let [answers, authority, additional] = sections;
        Ok(Message { header, questions, answers, authority, additional })
    }

    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        let mut writer = Writer::default();
        let h = &self.header;
        let mut flags = (u16::from(h.opcode & 0x0f) << 11) | u16::from(h.rcode & 0x0f);
        for (set, bit) in [
            (h.response, 0x8000),
            (h.authoritative, 0x0400),
            (h.truncated, 0x0200),
            (h.recursion_desired, 0x0100),
            (h.recursion_available, 0x0080),
        ] {
            if set {
                flags |= bit;
            }
        }
        writer.u16(h.id);
        writer.u16(flags);
        for count in [self.questions.len(), self.answers.len(), self.authority.len(), self.additional.len()] {
            writer.u16(u16::try_from(count).map_err(|_| WireError::TooLong)?);
        }
        for q in &self.questions {
            writer.name(&q.name);
            writer.u16(q.qtype.0);
            writer.u16(q.qclass);
        }
        for record in self.answers.iter().chain(&self.authority).chain(&self.additional) {
            writer.record(record)?;
        }
        if writer.bytes.len() > usize::from(u16::MAX) {
            return Err(WireError::TooLong);
        }
        Ok(writer.bytes)
    }

    /// Encodes within `limit` bytes: when the whole message does not fit, the
    /// records are dropped (but an OPT) and TC is set, telling the client to ask
    /// again over TCP (RFC 2181 §9: no partial RRsets).
    pub fn encode_within(&self, limit: usize) -> Result<Vec<u8>, WireError> {
        let bytes = self.encode()?;
        if bytes.len() <= limit {
            return Ok(bytes);
        }
        let mut truncated = Message {
            header: Header { truncated: true, ..self.header.clone() },
            questions: self.questions.clone(),
            additional: self.opt().cloned().into_iter().collect(),
            ..Default::default()
        };
        let bytes = truncated.encode()?;
        if bytes.len() <= limit {
            return Ok(bytes);
        }
        // Only an absurd question could get here; the header alone always fits.
        truncated.questions.clear();
        truncated.additional.clear();
        truncated.encode()
    }
}

/// The id of an encoded message, if it has a header.
pub fn message_id(bytes: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes([*bytes.first()?, *bytes.get(1)?]))
}

/// Rewrites the id of an encoded message in place.
pub fn set_message_id(bytes: &mut [u8], id: u16) {
    if bytes.len() >= 2 {
        bytes[..2].copy_from_slice(&id.to_be_bytes());
    }
}

/// Whether an encoded message is a response with TC set.
pub fn is_truncated_response(bytes: &[u8]) -> bool {
    bytes.len() >= HEADER_LEN && bytes[2] & 0x80 != 0 && bytes[2] & 0x02 != 0
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], WireError> {
        let end = self.at.checked_add(n).filter(|&end| end <= self.bytes.len()).ok_or(WireError::Short(self.at))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn u16(&mut self) -> Result<u16, WireError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Reads a name at the cursor, following compression pointers. Every pointer
    /// must point before the one that led to it, so a loop is impossible.
    fn name(&mut self) -> Result<Name, WireError> {
        let mut labels = Vec::new();
        let mut encoded = 1;
        let mut pos = self.at;
        // Where the cursor ends: after the first pointer, or after the root label.
        let mut resume: Option<usize> = None;
        let mut limit = pos;
        loop {
            let len = *self.bytes.get(pos).ok_or(WireError::Short(pos))?;
            match len & 0xc0 {
                0x00 if len == 0 => {
                    pos += 1;
                    break;
                }
                0x00 => {
                    let start = pos + 1;
                    let end = start + usize::from(len);
                    let label = self.bytes.get(start..end).ok_or(WireError::Short(start))?;
                    encoded += label.len() + 1;
                    if encoded > MAX_NAME_BYTES {
                        return Err(WireError::BadName("longer than 255 bytes".to_string()));
                    }
                    labels.push(label.to_vec());
                    pos = end;
                }
                0xc0 => {
                    let low = *self.bytes.get(pos + 1).ok_or(WireError::Short(pos + 1))?;
                    let target = (usize::from(len & 0x3f) << 8) | usize::from(low);
                    if target >= limit {
                        return Err(WireError::BadPointer(pos));
                    }
                    resume.get_or_insert(pos + 2);
                    limit = target;
                    pos = target;
                }
                _ => return Err(WireError::BadName(format!("label type {:#04x} at byte {pos}", len & 0xc0))),
            }
        }
        self.at = resume.unwrap_or(pos);
        Ok(Name(labels))
    }

    fn record(&mut self) -> Result<Record, WireError> {
        let name = self.name()?;
        let rtype = RecordType(self.u16()?);
        let class = self.u16()?;
        let ttl = self.u32()?;
        let len = usize::from(self.u16()?);
        let start = self.at;
        let end = start.checked_add(len).filter(|&e| e <= self.bytes.len()).ok_or(WireError::Short(start))?;
        let bad = || WireError::BadRData { rtype: rtype.0, len };
        let data = match rtype {
            RecordType::A => {
                let b: [u8; 4] = self.take(len)?.try_into().map_err(|_| bad())?;
                RData::A(Ipv4Addr::from(b))
            }
            RecordType::AAAA => {
                let b: [u8; 16] = self.take(len)?.try_into().map_err(|_| bad())?;
                RData::Aaaa(Ipv6Addr::from(b))
            }
            RecordType::CNAME => RData::Cname(self.name()?),
            RecordType::NS => RData::Ns(self.name()?),
            RecordType::PTR => RData::Ptr(self.name()?),
            RecordType::SRV => {
                RData::Srv { priority: self.u16()?, weight: self.u16()?, port: self.u16()?, target: self.name()? }
            }
            RecordType::SOA => RData::Soa {
                mname: self.name()?,
                rname: self.name()?,
                serial: self.u32()?,
                refresh: self.u32()?,
                retry: self.u32()?,
                expire: self.u32()?,
                minimum: self.u32()?,
            },
            _ => RData::Raw(self.take(len)?.to_vec()),
        };
        if self.at != end {
            return Err(bad());
        }
        Ok(Record { name, rtype, class, ttl, data })
    }
}

#[derive(Default)]
struct Writer {
    bytes: Vec<u8>,
    /// Name suffixes already written, by offset, for compression. Exact case: a
    /// pointer must not change the case of what the client asked for.
    suffixes: HashMap<Vec<Vec<u8>>, u16>,
}

/// Offsets a compression pointer can reach.
const MAX_POINTER: usize = 0x3fff;

impl Writer {
    fn u16(&mut self, v: u16) {
        self.bytes.extend_from_slice(&v.to_be_bytes());
    }

    fn u32(&mut self, v: u32) {
        self.bytes.extend_from_slice(&v.to_be_bytes());
    }

    fn name(&mut self, name: &Name) {
        for i in 0..name.0.len() {
            if let Some(&offset) = self.suffixes.get(&name.0[i..]) {
                self.u16(0xc000 | offset);
                return;
            }
            if self.bytes.len() <= MAX_POINTER {
                self.suffixes.insert(name.0[i..].to_vec(), self.bytes.len() as u16);
            }
            let label = &name.0[i];
            self.bytes.push(label.len() as u8);
            self.bytes.extend_from_slice(label);
        }
        self.bytes.push(0);
    }

    fn record(&mut self, record: &Record) -> Result<(), WireError> {
        self.name(&record.name);
        self.u16(record.rtype.0);
        self.u16(record.class);
        self.u32(record.ttl);
        let len_at = self.bytes.len();
        self.u16(0);
        match &record.data {
            RData::A(ip) => self.bytes.extend_from_slice(&ip.octets()),
            RData::Aaaa(ip) => self.bytes.extend_from_slice(&ip.octets()),
            RData::Cname(n) | RData::Ns(n) | RData::Ptr(n) => self.name(n),
            RData::Srv { priority, weight, port, target } => {
                self.u16(*priority);
                self.u16(*weight);
                self.u16(*port);
                // RFC 2782: the target is not compressed.
                self.uncompressed_name(target);
            }
            RData::Soa { mname, rname, serial, refresh, retry, expire, minimum } => {
                self.name(mname);
                self.name(rname);
                for v in [serial, refresh, retry, expire, minimum] {
                    self.u32(*v);
                }
            }
            RData::Raw(bytes) => self.bytes.extend_from_slice(bytes),
        }
        let len = u16::try_from(self.bytes.len() - len_at - 2).map_err(|_| WireError::TooLong)?;
        self.bytes[len_at..len_at + 2].copy_from_slice(&len.to_be_bytes());
        Ok(())
    }

    fn uncompressed_name(&mut self, name: &Name) {
        for label in &name.0 {
            self.bytes.push(label.len() as u8);
            self.bytes.extend_from_slice(label);
        }
        self.bytes.push(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> Name {
        Name::parse(text).unwrap()
    }

    fn sample() -> Message {
        let query = Message {
            header: Header { id: 0xbeef, recursion_desired: true, ..Default::default() },
            questions: vec![Question {
                name: name("_http._tcp.web.default.svc.cluster.local"),
                qtype: RecordType::SRV,
                qclass: CLASS_IN,
            }],
            ..Default::default()
        };
        let mut response = Message::response_to(&query, Rcode::NoError);
        response.header.authoritative = true;
        response.answers.push(Record::new(
            name("_http._tcp.web.default.svc.cluster.local"),
            5,
            RData::Srv { priority: 0, weight: 100, port: 80, target: name("web.default.svc.cluster.local") },
        ));
        response.additional.push(Record::new(
            name("web.default.svc.cluster.local"),
            5,
            RData::A(Ipv4Addr::new(10, 96, 0, 10)),
        ));
        response.additional.push(Record::new(
            name("Web.Default.svc.cluster.local"),
            5,
            RData::Aaaa("fd00::1".parse().unwrap()),
        ));
        response.authority.push(Record::new(
            name("cluster.local"),
            5,
            RData::Soa {
                mname: name("ns.dns.cluster.local"),
                rname: name("hostmaster.cluster.local"),
                serial: 7,
                refresh: 7200,
                retry: 1800,
                expire: 86400,
                minimum: 5,
            },
        ));
        response.additional.push(Record::opt(1232));
        response
    }

    #[test]
    fn round_trip_with_compression() {
        let message = sample();
        let bytes = message.encode().unwrap();
        assert_eq!(Message::decode(&bytes).unwrap(), message);
        // Compression made it much shorter than the names written out in full.
        let names_in_full: usize = 40 * 2 + 30 * 3 + 14 + 21 + 25;
        assert!(bytes.len() < names_in_full, "{} bytes", bytes.len());
    }

    #[test]
    fn header_flags_round_trip() {
        let mut message = sample();
        message.header = Header {
            id: 1,
            response: true,
            opcode: 2,
            authoritative: false,
            truncated: true,
            recursion_desired: false,
            recursion_available: true,
            rcode: 3,
        };
        let bytes = message.encode().unwrap();
        let decoded = Message::decode(&bytes).unwrap();
        assert_eq!(decoded.header, message.header);
        assert_eq!(decoded.rcode(), Rcode::NxDomain);
        assert!(is_truncated_response(&bytes));
    }

    #[test]
    fn pointer_loops_and_forward_pointers_are_rejected() {
        // Header with one question whose name is a pointer to itself.
        let mut bytes = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        bytes.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        assert_eq!(Message::decode(&bytes), Err(WireError::BadPointer(12)));
        // A pointer forward into the message.
        let mut bytes = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        bytes.extend_from_slice(&[0xc0, 14, 1, b'a', 0, 0, 1, 0, 1]);
        assert_eq!(Message::decode(&bytes), Err(WireError::BadPointer(12)));
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        let bytes = sample().encode().unwrap();
        for len in 0..bytes.len() {
            assert!(Message::decode(&bytes[..len]).is_err(), "decoded a prefix of {len} bytes");
        }
    }

    #[test]
    fn bad_rdata_length_is_an_error() {
        let mut message = sample();
        message.answers = vec![Record { rtype: RecordType::A, ..Record::new(name("a"), 1, RData::Raw(vec![1, 2, 3])) }];
        message.authority.clear();
        message.additional.clear();
        let bytes = message.encode().unwrap();
        assert!(matches!(Message::decode(&bytes), Err(WireError::BadRData { rtype: 1, len: 3 })));
    }

    #[test]
    fn unknown_types_keep_their_bytes() {
        let mut message = sample();
        message.answers = vec![Record {
            rtype: RecordType(16),
            ..Record::new(name("txt.example"), 1, RData::Raw(b"\x05hello".to_vec()))
        }];
        let bytes = message.encode().unwrap();
        assert_eq!(Message::decode(&bytes).unwrap(), message);
    }

    #[test]
    fn names_parse_check_and_lowercase() {
        assert_eq!(
            name("Web.Default.SVC.cluster.local.").to_lowercase_text().as_deref(),
            Some("web.default.svc.cluster.local")
        );
        assert_eq!(Name::root().to_lowercase_text().as_deref(), Some(""));
        assert_eq!(Name::parse(".").unwrap(), Name::root());
        assert!(Name::parse("a..b").is_err());
        assert!(Name::parse(&"x".repeat(64)).is_err());
        let long = vec!["abcdefghi"; 26].join(".");
        assert!(Name::parse(&long).is_err(), "260 bytes encoded");
        let odd = Name::from_labels(vec![b"a.b".to_vec(), b"c".to_vec()]).unwrap();
        assert_eq!(odd.to_lowercase_text(), None);
        assert_eq!(odd.to_string(), "a\\046b.c");
    }

    #[test]
    fn encode_within_truncates_whole_sections() {
        let mut message = sample();
        for i in 0..100u8 {
            message.answers.push(Record::new(name("many.example"), 5, RData::A(Ipv4Addr::new(10, 0, 0, i))));
        }
        let full = message.encode().unwrap();
        assert!(full.len() > 512);
        let bytes = message.encode_within(512).unwrap();
        assert!(bytes.len() <= 512);
        let decoded = Message::decode(&bytes).unwrap();
        assert!(decoded.header.truncated);
        assert!(decoded.answers.is_empty());
        assert_eq!(decoded.questions, message.questions);
        assert_eq!(decoded.opt().map(|o| o.class), Some(1232));
        assert_eq!(message.encode_within(full.len()).unwrap(), full);
    }

    #[test]
    fn ids_are_read_and_rewritten_in_place() {
        let mut bytes = sample().encode().unwrap();
        assert_eq!(message_id(&bytes), Some(0xbeef));
        set_message_id(&mut bytes, 7);
        assert_eq!(Message::decode(&bytes).unwrap().header.id, 7);
        assert_eq!(message_id(&[1]), None);
    }
}
