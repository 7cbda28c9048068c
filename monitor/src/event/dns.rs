//! DNS answers as the kernel copied them (`kind::DNS`), parsed with
//! hickory-proto into what egress rules need: the name a container asked
//! for, and the addresses the answer gave for it, each with its TTL.
//!
//! Only addresses reachable from the question through the answer's CNAME
//! chain count: a record for an unrelated name in the same message (a
//! server's "helpful" extra, or a forged one) names nothing the container
//! asked for.
use std::{collections::HashMap, net::IpAddr};

use hickory_proto::{
    op::{Header, MessageType, Query},
    rr::{Name, RData, Record},
    serialize::binary::{BinDecodable as _, BinDecoder},
};
use serde::Serialize;

/// How many CNAME links are followed from the question: resolvers stop
/// well before this (a loop or a very long chain is not an answer).
const MAX_CHAIN: usize = 16;

/// One DNS response, reduced to the question and its addresses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DnsAnswer {
    /// The name asked for, lower case, without the final dot.
    pub name: String,
    /// The names the CNAME chain went through, in order, after `name`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cnames: Vec<String>,
    /// Every address the answer gave for `name`, through the chain.
    pub addresses: Vec<DnsAddress>,
    /// The kernel copied only the start of a longer message: the records
    /// past the cut are not here.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// An address and how long it may be used for, in seconds: the least TTL
/// of the records that led to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct DnsAddress {
    pub address: IpAddr,
    pub ttl: u32,
}

/// Why a message did not give an answer.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    #[error("DNS message header: {0}")]
    Header(String),
    #[error("DNS message is a query, not a response")]
    NotResponse,
    #[error("DNS response without a question")]
    NoQuestion,
}

/// Parses a response. A message cut short (`truncated`) gives the records
/// before the cut; so does one with a malformed record: what came before
/// it was read as the resolver read it.
pub fn parse(message: &[u8], truncated: bool) -> Result<DnsAnswer, DnsError> {
    let mut decoder = BinDecoder::new(message);
    let header = Header::read(&mut decoder).map_err(|e| DnsError::Header(e.to_string()))?;
    if header.message_type != MessageType::Response {
        return Err(DnsError::NotResponse);
    }
    let question = (header.counts.queries > 0)
        .then(|| Query::read(&mut decoder).ok())
        .flatten()
        .ok_or(DnsError::NoQuestion)?;
    // Further questions (servers send one) are skipped over.
    for _ in 1..header.counts.queries {
        if Query::read(&mut decoder).is_err() {
            break;
        }
    }
    let mut records = Vec::new();
    for _ in 0..header.counts.answers {
        match Record::read(&mut decoder) {
            Ok(record) => records.push(record),
            Err(_) => break,
        }
    }
    Ok(reduce(&question.name, &records, truncated))
}

/// A name as rules write it: lower case, no final dot.
fn plain(name: &Name) -> String {
    let mut text = name.to_lowercase().to_ascii();
    if text.ends_with('.') {
        text.pop();
    }
    text
}

fn reduce(question: &Name, records: &[Record], truncated: bool) -> DnsAnswer {
    let name = plain(question);
    let mut aliases: HashMap<String, (String, u32)> = HashMap::new();
    let mut addresses: HashMap<String, Vec<DnsAddress>> = HashMap::new();
    for record in records {
        let owner = plain(&record.name);
        match &record.data {
            RData::CNAME(target) => {
                aliases.insert(owner, (plain(&target.0), record.ttl));
            }
            RData::A(a) => addresses.entry(owner).or_default().push(DnsAddress {
                address: IpAddr::V4(a.0),
                ttl: record.ttl,
            }),
            RData::AAAA(a) => addresses.entry(owner).or_default().push(DnsAddress {
                address: IpAddr::V6(a.0),
                ttl: record.ttl,
            }),
            _ => {}
        }
    }
    let mut cnames = Vec::new();
    let mut current = name.clone();
    let mut chain_ttl = u32::MAX;
    let mut found = Vec::new();
    for _ in 0..=MAX_CHAIN {
        if let Some(list) = addresses.get(&current) {
            found.extend(list.iter().map(|a| DnsAddress {
                address: a.address,
                ttl: a.ttl.min(chain_ttl),
            }));
        }
        let Some((target, ttl)) = aliases.get(&current) else {
            break;
        };
        if target == &name || cnames.contains(target) {
            break; // a loop
        }
        chain_ttl = chain_ttl.min(*ttl);
        cnames.push(target.clone());
        current = target.clone();
    }
    DnsAnswer {
        name,
        cnames,
        addresses: found,
        truncated,
    }
}

#[cfg(test)]
mod tests {
    use std::{net::Ipv4Addr, str::FromStr as _};

    use hickory_proto::{
        op::{Message, MessageType, OpCode, Query},
        rr::{
            RecordType,
            rdata::{A, AAAA, CNAME},
        },
    };

    use super::*;

    fn name(s: &str) -> Name {
        Name::from_str(s).unwrap()
    }

    fn response(question: &str, answers: Vec<Record>) -> Vec<u8> {
        let mut m = Message::new(7, MessageType::Response, OpCode::Query);
        m.add_query(Query::query(name(question), RecordType::A));
        for a in answers {
            m.add_answer(a);
        }
        m.to_vec().unwrap()
    }

    fn a(owner: &str, ttl: u32, ip: [u8; 4]) -> Record {
        Record::from_rdata(name(owner), ttl, RData::A(A(Ipv4Addr::from(ip))))
    }

    fn cname(owner: &str, ttl: u32, target: &str) -> Record {
        Record::from_rdata(name(owner), ttl, RData::CNAME(CNAME(name(target))))
    }

    #[test]
    fn an_address_answer_gives_the_question_and_its_ttl() {
        let msg = response(
            "Allowed.Test.",
            vec![a("allowed.test.", 30, [192, 0, 2, 10])],
        );
        let answer = parse(&msg, false).unwrap();
        assert_eq!(answer.name, "allowed.test");
        assert!(answer.cnames.is_empty());
        assert_eq!(
            answer.addresses,
            vec![DnsAddress {
                address: "192.0.2.10".parse().unwrap(),
                ttl: 30
            }]
        );
    }

    #[test]
    fn a_cname_chain_is_followed_and_its_least_ttl_wins() {
        let msg = response(
            "www.allowed.test.",
            vec![
                cname("www.allowed.test.", 5, "edge.cdn.test."),
                cname("edge.cdn.test.", 300, "node7.cdn.test."),
                a("node7.cdn.test.", 60, [192, 0, 2, 11]),
                Record::from_rdata(
                    name("node7.cdn.test."),
                    60,
                    RData::AAAA(AAAA("2001:db8::b".parse().unwrap())),
                ),
            ],
        );
        let answer = parse(&msg, false).unwrap();
        assert_eq!(answer.name, "www.allowed.test");
        assert_eq!(answer.cnames, ["edge.cdn.test", "node7.cdn.test"]);
        let got: Vec<(String, u32)> = answer
            .addresses
            .iter()
            .map(|a| (a.address.to_string(), a.ttl))
            .collect();
        assert_eq!(
            got,
            [("192.0.2.11".to_owned(), 5), ("2001:db8::b".to_owned(), 5)]
        );
    }

    #[test]
    fn records_for_names_outside_the_chain_are_ignored() {
        let msg = response(
            "asked.test.",
            vec![
                a("asked.test.", 30, [192, 0, 2, 1]),
                a("bank.example.", 30, [198, 51, 100, 9]),
            ],
        );
        let answer = parse(&msg, false).unwrap();
        assert_eq!(answer.addresses.len(), 1);
        assert_eq!(answer.addresses[0].address.to_string(), "192.0.2.1");
    }

    #[test]
    fn a_cname_loop_ends() {
        let msg = response(
            "a.test.",
            vec![
                cname("a.test.", 30, "b.test."),
                cname("b.test.", 30, "a.test."),
            ],
        );
        let answer = parse(&msg, false).unwrap();
        assert_eq!(answer.cnames, ["b.test"]);
        assert!(answer.addresses.is_empty());
    }

    #[test]
    fn a_cut_message_gives_the_records_before_the_cut() {
        let msg = response(
            "many.test.",
            vec![
                a("many.test.", 30, [192, 0, 2, 1]),
                a("many.test.", 30, [192, 0, 2, 2]),
            ],
        );
        let cut = &msg[..msg.len() - 3];
        let answer = parse(cut, true).unwrap();
        assert!(answer.truncated);
        assert_eq!(answer.addresses.len(), 1);
    }

    #[test]
    fn queries_and_garbage_are_not_answers() {
        let mut q = Message::new(1, MessageType::Query, OpCode::Query);
        q.add_query(Query::query(name("x.test."), RecordType::A));
        assert_eq!(
            parse(&q.to_vec().unwrap(), false),
            Err(DnsError::NotResponse)
        );
        assert!(matches!(
            parse(&[0x12, 0x34, 0x81], false),
            Err(DnsError::Header(_))
        ));
        let mut no_question = Message::new(1, MessageType::Response, OpCode::Query);
        no_question.add_answer(a("x.test.", 1, [192, 0, 2, 1]));
        assert_eq!(
            parse(&no_question.to_vec().unwrap(), false),
            Err(DnsError::NoQuestion)
        );
    }
}
