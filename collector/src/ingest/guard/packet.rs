//! MQTT 3.1.1 framing and the few client packets the guard reads
//! (CONNECT, PUBLISH's topic, SUBSCRIBE's filters), on rumqttc's public
//! `mqttbytes` parsers, whose grammar is rumqttd's own (fixed header,
//! remaining length of at most 4 bytes, strings with a 2-byte length), so
//! the guard and the broker read the same topic from the same bytes. The
//! PUBLISH topic, on every message, is read in place (no copy) with the
//! same grammar; the rare CONNECT and SUBSCRIBE go through rumqttc's.

use bytes::Bytes;
use rumqttc::mqttbytes::{self, FixedHeader, PacketType, Protocol, v4};

/// Why a client's bytes are not MQTT 3.1.1 the guard lets through.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PacketError {
    #[error("malformed MQTT packet: {0}")]
    Malformed(String),
    #[error("MQTT packet of {size} bytes exceeds mqtt.max_packet_bytes = {max}")]
    TooLarge { size: usize, max: usize },
    #[error("a client may not send MQTT packet type {0}")]
    NotFromClient(u8),
    #[error("only MQTT 3.1.1 is spoken here (CONNECT asked for protocol level 5)")]
    ProtocolLevel,
}

/// What the guard needs to know of one client packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet<'a> {
    Connect(Box<v4::Connect>),
    /// The topic, borrowed from the frame.
    Publish {
        topic: &'a str,
    },
    Subscribe {
        filters: Vec<String>,
    },
    Unsubscribe,
    /// PUBACK, PUBREC, PUBREL, PUBCOMP, PINGREQ, DISCONNECT: answers to
    /// what the broker sent, or keep-alive; forwarded as they are.
    Other,
}

/// The fixed header of the first packet in `buf` once all of it is
/// there; `None` while more bytes are needed.
pub fn frame(buf: &[u8], max: usize) -> Result<Option<FixedHeader>, PacketError> {
    match mqttbytes::check(buf.iter(), max) {
        Ok(h) => Ok(Some(h)),
        Err(mqttbytes::Error::InsufficientBytes(_)) => Ok(None),
        Err(mqttbytes::Error::PayloadSizeLimitExceeded(size)) => {
            Err(PacketError::TooLarge { size, max })
        }
        Err(e) => Err(PacketError::Malformed(e.to_string())),
    }
}

/// Reads the packet `frame` (exactly one, as framed by [`frame`]).
pub fn parse(header: FixedHeader, frame: &[u8]) -> Result<Packet<'_>, PacketError> {
    let malformed = |e: mqttbytes::Error| PacketError::Malformed(e.to_string());
    let kind = header.packet_type().map_err(malformed)?;
    Ok(match kind {
        PacketType::Connect => {
            connect_flags(frame)?;
            let c = v4::Connect::read(header, Bytes::copy_from_slice(frame)).map_err(malformed)?;
            if c.protocol != Protocol::V4 {
                return Err(PacketError::ProtocolLevel);
            }
            Packet::Connect(Box::new(c))
        }
        PacketType::Publish => Packet::Publish {
            topic: publish_topic(frame)?,
        },
        PacketType::Subscribe => Packet::Subscribe {
            filters: v4::Subscribe::read(header, Bytes::copy_from_slice(frame))
                .map_err(malformed)?
                .filters
                .into_iter()
                .map(|f| f.path)
                .collect(),
        },
        PacketType::Unsubscribe => Packet::Unsubscribe,
        PacketType::PubAck
        | PacketType::PubRec
        | PacketType::PubRel
        | PacketType::PubComp
        | PacketType::PingReq
        | PacketType::Disconnect => Packet::Other,
        PacketType::ConnAck | PacketType::SubAck | PacketType::UnsubAck | PacketType::PingResp => {
            return Err(PacketError::NotFromClient(kind as u8));
        }
    })
}

/// The fixed header's length: the type byte and a remaining length of 1
/// to 4 bytes, the last without its high bit (`frame` checked it).
fn header_len(frame: &[u8]) -> Option<usize> {
    Some(2 + frame.get(1..)?.iter().take(4).position(|b| b & 0x80 == 0)?)
}

/// What rumqttc's CONNECT parser lets through and MQTT 3.1.1 refuses: the
/// fixed header's flags must be 0 (§2.2.2), the connect flags' reserved
/// bit 0 (§3.1.2.3: "the Server MUST ... disconnect the Client if it is
/// not zero"), and without a will its QoS and retain bits 0 (§3.1.2.6).
fn connect_flags(frame: &[u8]) -> Result<(), PacketError> {
    let bad = |why: &str| PacketError::Malformed(format!("CONNECT: {why}"));
    let first = *frame.first().ok_or_else(|| bad("empty frame"))?;
    if first & 0x0f != 0 {
        return Err(bad("fixed header flags are reserved"));
    }
    let header = header_len(frame).ok_or_else(|| bad("remaining length"))?;
    let name_len = match frame.get(header..header + 2) {
        Some([hi, lo]) => usize::from(u16::from_be_bytes([*hi, *lo])),
        _ => return Err(bad("no protocol name")),
    };
    // Protocol name, then its level, then the connect flags.
    let flags = *frame
        .get(header + 2 + name_len + 1)
        .ok_or_else(|| bad("no connect flags"))?;
    if flags & 0x01 != 0 {
        return Err(bad("the reserved connect flag is set"));
    }
    if flags & 0x04 == 0 && flags & 0x38 != 0 {
        return Err(bad("will QoS or retain without a will"));
    }
    Ok(())
}

/// The topic of a whole PUBLISH frame, in place: after the fixed header
/// (type byte, 1 to 4 length bytes), a 2-byte big-endian length and the
/// topic; then, at QoS 1 and 2, a non-zero packet id. What rumqttd and
/// rumqttc accept, and UTF-8 besides.
fn publish_topic(frame: &[u8]) -> Result<&str, PacketError> {
    let bad = |why: &str| PacketError::Malformed(why.to_owned());
    let first = *frame.first().ok_or_else(|| bad("empty frame"))?;
    let qos = (first >> 1) & 0b11;
    if qos == 3 {
        return Err(bad("QoS 3"));
    }
    let header = header_len(frame).ok_or_else(|| bad("remaining length"))?;
    let rest = frame.get(header..).ok_or_else(|| bad("no topic"))?;
    let (len, rest) = match rest {
        [hi, lo, rest @ ..] => (usize::from(u16::from_be_bytes([*hi, *lo])), rest),
        _ => return Err(bad("no topic length")),
    };
    let topic = rest
        .get(..len)
        .ok_or_else(|| bad("topic longer than the packet"))?;
    if qos > 0 {
        match rest.get(len..len + 2) {
            Some([0, 0]) => return Err(bad("packet id 0")),
            Some(_) => {}
            None => return Err(bad("no packet id")),
        }
    }
    std::str::from_utf8(topic).map_err(|_| bad("topic is not UTF-8"))
}

/// The bytes of a CONNACK with `code` (3.1.1: 1 unacceptable protocol
/// version, 5 not authorised).
pub fn connack(code: u8) -> [u8; 4] {
    [0x20, 0x02, 0x00, code]
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use bytes::BytesMut;
    use rumqttc::mqttbytes::QoS;

    /// `packet` encoded by rumqttc, as a client would send it.
    pub fn encode(packet: v4::Packet) -> Vec<u8> {
        let mut b = BytesMut::new();
        packet.write(&mut b, 1 << 20).expect("encode");
        b.to_vec()
    }

    /// Frames and parses the first packet of `bytes`.
    pub fn read(bytes: &[u8]) -> Result<Option<(usize, Packet<'_>)>, PacketError> {
        let Some(h) = frame(bytes, 1 << 20)? else {
            return Ok(None);
        };
        let len = h.frame_length();
        Ok(Some((len, parse(h, &bytes[..len])?)))
    }

    #[test]
    fn reads_what_an_agent_sends() {
        let mut c = v4::Connect::new("sobre-agent-a1");
        c.set_login("a1", "pw");
        c.last_will = Some(v4::LastWill::new(
            "sobre/v1/agents/a1/status",
            "offline",
            QoS::AtLeastOnce,
            true,
        ));
        let bytes = encode(v4::Packet::Connect(c.clone()));
        assert_eq!(
            read(&bytes),
            Ok(Some((bytes.len(), Packet::Connect(Box::new(c)))))
        );
        let mut p = v4::Publish::new("sobre/v1/agents/a1/up", QoS::AtLeastOnce, vec![1, 2, 3]);
        p.pkid = 7;
        let bytes = encode(v4::Packet::Publish(p));
        assert_eq!(
            read(&bytes),
            Ok(Some((
                bytes.len(),
                Packet::Publish {
                    topic: "sobre/v1/agents/a1/up"
                }
            )))
        );
        let s = v4::Subscribe::new("sobre/v1/agents/a1/down", QoS::AtLeastOnce);
        let bytes = encode(v4::Packet::Subscribe(s));
        assert_eq!(
            read(&bytes),
            Ok(Some((
                bytes.len(),
                Packet::Subscribe {
                    filters: vec!["sobre/v1/agents/a1/down".into()]
                }
            )))
        );
        assert_eq!(read(&[0xc0, 0x00]), Ok(Some((2, Packet::Other))));
    }

    #[test]
    fn waits_for_a_whole_packet_and_refuses_the_rest() {
        let p = encode(v4::Packet::Publish(v4::Publish::new(
            "t",
            QoS::AtMostOnce,
            vec![0; 300],
        )));
        for cut in 0..p.len() {
            assert_eq!(read(&p[..cut]), Ok(None), "{cut} bytes of {}", p.len());
        }
        // Larger than the limit: refused from its header alone.
        assert!(matches!(
            frame(&p[..3], 100),
            Err(PacketError::TooLarge { .. })
        ));
        // A remaining length of 5 bytes.
        assert!(matches!(
            read(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01]),
            Err(PacketError::Malformed(_))
        ));
        // Reserved types 0 and 15, and what only a server sends.
        assert!(read(&[0x00, 0x00]).is_err());
        assert!(read(&[0xf0, 0x00]).is_err());
        assert_eq!(
            read(&[0x20, 0x02, 0, 0]),
            Err(PacketError::NotFromClient(2))
        );
        // A topic longer than the packet.
        assert!(matches!(
            read(&[0x30, 0x03, 0x00, 0x09, b'a']),
            Err(PacketError::Malformed(_))
        ));
    }

    #[test]
    fn a_publish_topic_is_read_in_place_as_rumqttc_reads_it() {
        for (qos, pkid) in [
            (QoS::AtMostOnce, 0),
            (QoS::AtLeastOnce, 9),
            (QoS::ExactlyOnce, 300),
        ] {
            let mut p = v4::Publish::new("sobre/v1/agents/a1/up", qos, vec![7; 3]);
            p.pkid = pkid;
            let bytes = encode(v4::Packet::Publish(p));
            assert_eq!(publish_topic(&bytes), Ok("sobre/v1/agents/a1/up"));
        }
        // A long payload: a 2-byte remaining length.
        let p = v4::Publish::new("t", QoS::AtMostOnce, vec![0; 200]);
        assert_eq!(publish_topic(&encode(v4::Packet::Publish(p))), Ok("t"));
        for bad in [
            &[0x30, 0x01, 0x00][..],               // half a length
            &[0x32, 0x03, 0x00, 0x01, b't'],       // QoS 1, no packet id
            &[0x32, 0x05, 0x00, 0x01, b't', 0, 0], // packet id 0
            &[0x36, 0x05, 0x00, 0x01, b't', 0, 1], // QoS 3
            &[0x30, 0x03, 0x00, 0x01, 0xff],       // not UTF-8
        ] {
            assert!(
                matches!(read(bad), Err(PacketError::Malformed(_))),
                "{bad:?}"
            );
        }
    }

    proptest::proptest! {
        /// Any complete frame: the in-place topic is rumqttc's, or both
        /// refuse it.
        #[test]
        fn the_in_place_topic_is_rumqttcs(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40), flags in 0u8..16) {
            let mut bytes = vec![0x30 | flags, body.len() as u8];
            bytes.extend(&body);
            let h = frame(&bytes, 1 << 20).expect("frame").expect("whole");
            let theirs = v4::Publish::read(h, Bytes::copy_from_slice(&bytes)).map(|p| p.topic).ok();
            let ours = publish_topic(&bytes).ok().map(str::to_owned);
            proptest::prop_assert_eq!(ours, theirs);
        }
    }

    #[test]
    fn a_reserved_connect_flag_reached_authentication() {
        let mut c = v4::Connect::new("sobre-agent-a1");
        c.set_login("a1", "pw");
        let good = encode(v4::Packet::Connect(c));
        assert!(matches!(read(&good), Ok(Some((_, Packet::Connect(_))))));
        // Protocol name "MQTT" (2 + 4 bytes) and level after the 2-byte
        // fixed header: the flags are byte 9.
        assert_eq!(good[9] & 0xc0, 0xc0, "user name and password flags");
        let mut reserved = good.clone();
        reserved[9] |= 0x01;
        assert!(
            matches!(read(&reserved), Err(PacketError::Malformed(m)) if m.contains("reserved connect flag")),
            "refused as a protocol error, before anyone checks the password"
        );
        let mut header = good.clone();
        header[0] |= 0x02;
        assert!(matches!(read(&header), Err(PacketError::Malformed(_))));
        let mut will_qos = good.clone();
        will_qos[9] |= 0x08;
        assert!(matches!(read(&will_qos), Err(PacketError::Malformed(_))));
    }

    #[test]
    fn mqtt_5_is_refused() {
        let mut c = v4::Connect::new("x");
        c.protocol = Protocol::V5;
        assert_eq!(
            read(&encode(v4::Packet::Connect(c))),
            Err(PacketError::ProtocolLevel)
        );
    }
}
