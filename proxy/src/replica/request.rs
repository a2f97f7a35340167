//! A cache miss as a replica runs it, and its answer as the cache stores it.
//!
//! A result from a replica must be byte for byte what a capture of PostgreSQL's answer to the
//! client's own request would have stored ([`crate::session::caching::capture`]), since hits
//! replay it to clients that asked the primary:
//!
//! - a simple Query is sent as the client sent it; the entry is its RowDescription, DataRows
//!   and CommandComplete;
//! - an extended-protocol Execute is sent as Parse, Bind, (Describe of the portal, when the
//!   client described it), Execute with the client's row limit, and Sync, all unnamed; the
//!   entry is its DataRows and CommandComplete (or PortalSuspended), and the RowDescription
//!   (or NoData) when described.
//!
//! Anything a capture would refuse (a notice, an error, a parameter change, an empty query, a
//! second result, more than the largest entry) makes the answer unfit: nothing is stored and
//! the client's request goes to the primary.

use bytes::{BufMut, Bytes, BytesMut};

/// A miss for a replica to answer.
#[derive(Debug, Clone)]
pub(crate) enum ReplicaRequest {
    /// A simple Query: its frame as the client sent it.
    Simple(Bytes),
    /// One Execute of an extended-protocol batch.
    Extended {
        /// The statement text.
        sql: Bytes,
        /// The Parse's parameter types (count and OIDs).
        param_types: Bytes,
        /// The Bind's formats, values and result formats.
        arguments: Bytes,
        /// The client described the portal.
        described: bool,
        /// The Execute's row limit (0: all).
        limit: u32,
    },
}

impl ReplicaRequest {
    /// The frames to send.
    pub(crate) fn frames(&self) -> Bytes {
        match self {
            ReplicaRequest::Simple(query) => query.clone(),
            ReplicaRequest::Extended {
                sql,
                param_types,
                arguments,
                described,
                limit,
            } => {
                let mut out = BytesMut::with_capacity(sql.len() + arguments.len() + 64);
                frame(&mut out, b'P', |body| {
                    body.put_u8(0);
                    body.put_slice(sql);
                    body.put_u8(0);
                    body.put_slice(param_types);
                });
                frame(&mut out, b'B', |body| {
                    body.put_u8(0);
                    body.put_u8(0);
                    body.put_slice(arguments);
                });
                if *described {
                    frame(&mut out, b'D', |body| {
                        body.put_u8(b'P');
                        body.put_u8(0);
                    });
                }
                frame(&mut out, b'E', |body| {
                    body.put_u8(0);
                    body.put_u32(*limit);
                });
                frame(&mut out, b'S', |_| {});
                out.freeze()
            }
        }
    }

    /// A collector of the answer, keeping at most `max` bytes.
    pub(crate) fn collector(&self, max: usize) -> Collector {
        let stage = match self {
            ReplicaRequest::Simple(_) => Stage::SimpleRows,
            ReplicaRequest::Extended { described, .. } => Stage::ParseComplete {
                described: *described,
            },
        };
        Collector {
            stage,
            response: BytesMut::new(),
            meta: Bytes::new(),
            max,
            fit: true,
        }
    }
}

/// Writes one frame: tag, length, body.
fn frame(out: &mut BytesMut, tag: u8, body: impl FnOnce(&mut BytesMut)) {
    let start = out.len();
    out.put_u8(tag);
    out.put_u32(0);
    body(out);
    let length = (out.len() - start - 1) as u32;
    out[start + 1..start + 5].copy_from_slice(&length.to_be_bytes());
}

/// Where in the answer the collector is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Extended: ParseComplete next.
    ParseComplete { described: bool },
    /// Extended: BindComplete next.
    BindComplete { described: bool },
    /// Extended: the Describe's RowDescription or NoData next.
    Description,
    /// Extended: DataRows, then CommandComplete or PortalSuspended.
    ExtendedRows,
    /// Simple: RowDescription, DataRows, then CommandComplete.
    SimpleRows,
    /// The result is complete: only ReadyForQuery may follow.
    Complete,
}

/// What one message of the answer leads to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Collected {
    /// Keep reading.
    More,
    /// ReadyForQuery: the answer is over, with the session's status byte.
    Ready(u8),
}

/// The answer being collected.
#[derive(Debug)]
pub(crate) struct Collector {
    stage: Stage,
    response: BytesMut,
    meta: Bytes,
    max: usize,
    fit: bool,
}

impl Collector {
    /// Takes one message (`cut`: only a prefix of its body was kept).
    pub(crate) fn accept(&mut self, tag: u8, body: &[u8], cut: bool) -> Collected {
        if tag == b'Z' {
            if self.stage != Stage::Complete {
                self.fit = false;
            }
            return Collected::Ready(body.first().copied().unwrap_or(b'?'));
        }
        if cut {
            self.unfit();
            return Collected::More;
        }
        self.stage = match (self.stage, tag) {
            (Stage::ParseComplete { described }, b'1') => Stage::BindComplete { described },
            (Stage::BindComplete { described: true }, b'2') => Stage::Description,
            (Stage::BindComplete { described: false }, b'2') => Stage::ExtendedRows,
            (Stage::Description, b'T' | b'n') => {
                self.meta = encode(tag, body).freeze();
                Stage::ExtendedRows
            }
            (Stage::ExtendedRows, b'D') | (Stage::SimpleRows, b'T' | b'D') => {
                self.keep(tag, body);
                self.stage
            }
            (Stage::ExtendedRows, b'C' | b's') | (Stage::SimpleRows, b'C') => {
                self.keep(tag, body);
                Stage::Complete
            }
            _ => {
                self.unfit();
                self.stage
            }
        };
        Collected::More
    }

    /// The entry's response and meta, if the answer is fit to store.
    pub(crate) fn into_result(self) -> Option<(Bytes, Bytes)> {
        (self.fit && self.stage == Stage::Complete).then(|| (self.response.freeze(), self.meta))
    }

    fn keep(&mut self, tag: u8, body: &[u8]) {
        if !self.fit {
            return;
        }
        if self.response.len() + self.meta.len() + body.len() + 5 > self.max {
            self.unfit();
            return;
        }
        self.response.put_u8(tag);
        self.response.put_u32((body.len() + 4) as u32);
        self.response.put_slice(body);
    }

    fn unfit(&mut self) {
        self.fit = false;
        self.response = BytesMut::new();
    }
}

fn encode(tag: u8, body: &[u8]) -> BytesMut {
    let mut out = BytesMut::with_capacity(body.len() + 5);
    out.put_u8(tag);
    out.put_u32((body.len() + 4) as u32);
    out.put_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extended(described: bool, limit: u32) -> ReplicaRequest {
        ReplicaRequest::Extended {
            sql: Bytes::from_static(b"SELECT v FROM t WHERE id = $1"),
            param_types: Bytes::from_static(&[0, 1, 0, 0, 0, 23]),
            arguments: Bytes::from_static(&[0, 0, 0, 1, 0, 0, 0, 1, b'7', 0, 0]),
            described,
            limit,
        }
    }

    /// The frames of a byte string, as (tag, body).
    fn frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let length = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
            out.push((bytes[0], bytes[5..1 + length].to_vec()));
            bytes = &bytes[1 + length..];
        }
        out
    }

    #[test]
    fn an_execute_is_sent_unnamed_with_its_limit_and_describe() {
        let sent = frames(&extended(true, 1).frames());
        let tags: Vec<u8> = sent.iter().map(|(tag, _)| *tag).collect();
        assert_eq!(tags, b"PBDES");
        assert_eq!(sent[0].1[0], 0, "unnamed statement");
        assert!(sent[0].1.ends_with(&[0, 1, 0, 0, 0, 23]));
        assert_eq!(&sent[1].1[..2], &[0, 0], "unnamed portal and statement");
        assert_eq!(sent[2].1, b"P\0");
        assert_eq!(sent[3].1, [0, 0, 0, 0, 1]);
        let tags: Vec<u8> = frames(&extended(false, 0).frames())
            .iter()
            .map(|(tag, _)| *tag)
            .collect();
        assert_eq!(tags, b"PBES");
    }

    #[test]
    fn an_extended_answer_keeps_rows_and_description_apart() {
        let mut collector = extended(true, 0).collector(1024);
        for (tag, body) in [
            (b'1', &b""[..]),
            (b'2', b""),
            (b'T', b"desc"),
            (b'D', b"row1"),
            (b'D', b"row2"),
            (b'C', b"SELECT 2\0"),
        ] {
            assert_eq!(collector.accept(tag, body, false), Collected::More);
        }
        assert_eq!(collector.accept(b'Z', b"I", false), Collected::Ready(b'I'));
        let (response, meta) = collector.into_result().expect("fit");
        assert_eq!(&meta[..], b"T\0\0\0\x08desc");
        let tags: Vec<u8> = frames(&response).iter().map(|(tag, _)| *tag).collect();
        assert_eq!(tags, b"DDC");
    }

    #[test]
    fn a_simple_answer_keeps_its_row_description() {
        let mut collector = ReplicaRequest::Simple(Bytes::new()).collector(1024);
        for (tag, body) in [(b'T', &b"d"[..]), (b'D', b"r"), (b'C', b"SELECT 1\0")] {
            collector.accept(tag, body, false);
        }
        collector.accept(b'Z', b"I", false);
        let (response, meta) = collector.into_result().expect("fit");
        assert!(meta.is_empty());
        let tags: Vec<u8> = frames(&response).iter().map(|(tag, _)| *tag).collect();
        assert_eq!(tags, b"TDC");
    }

    #[test]
    fn what_a_capture_refuses_is_unfit() {
        let cases: [&[(u8, &[u8])]; 5] = [
            // A notice.
            &[(b'T', b"d"), (b'N', b"notice"), (b'C', b"SELECT 0\0")],
            // An error.
            &[(b'E', b"error")],
            // A second result.
            &[
                (b'T', b"d"),
                (b'C', b"SELECT 0\0"),
                (b'T', b"d"),
                (b'C', b"x\0"),
            ],
            // A parameter change.
            &[
                (b'S', b"TimeZone\0UTC\0"),
                (b'T', b"d"),
                (b'C', b"SELECT 0\0"),
            ],
            // An empty query.
            &[(b'I', b"")],
        ];
        for case in cases {
            let mut collector = ReplicaRequest::Simple(Bytes::new()).collector(1024);
            for (tag, body) in case {
                collector.accept(*tag, body, false);
            }
            collector.accept(b'Z', b"I", false);
            assert!(collector.into_result().is_none(), "{case:?}");
        }
    }

    #[test]
    fn answers_past_the_largest_entry_or_cut_are_unfit() {
        let mut collector = ReplicaRequest::Simple(Bytes::new()).collector(20);
        collector.accept(b'T', b"d", false);
        collector.accept(b'D', &[0u8; 32], false);
        collector.accept(b'C', b"SELECT 1\0", false);
        collector.accept(b'Z', b"I", false);
        assert!(collector.into_result().is_none());
        let mut collector = ReplicaRequest::Simple(Bytes::new()).collector(1024);
        collector.accept(b'T', b"d", false);
        collector.accept(b'D', b"prefix", true);
        collector.accept(b'C', b"SELECT 1\0", false);
        collector.accept(b'Z', b"I", false);
        assert!(collector.into_result().is_none());
    }
}
