//! How an enrolled agent and the collector authenticate each other on the
//! wire: keyed BLAKE3 over the message with its `mac` field empty, with
//! the agent's key; and the MQTT password derived from that key (so the
//! key itself never crosses). Both ends use these, and only these.

use crate::v1::{Downlink, Envelope};
use prost::Message;

/// `bytes` (an encoded envelope) with its MAC set; `None` if they do not
/// decode.
pub fn sign(key: &[u8; 32], bytes: &[u8]) -> Option<Vec<u8>> {
    let mut env = Envelope::decode(bytes).ok()?;
    env.mac.clear();
    let mac = blake3::keyed_hash(key, &env.encode_to_vec());
    env.mac = mac.as_bytes().to_vec();
    Some(env.encode_to_vec())
}

/// The MQTT password an enrolled agent connects with (user name: its
/// agent id).
pub fn mqtt_password(key: &[u8; 32]) -> String {
    blake3::keyed_hash(key, b"sobre/v1 mqtt connect")
        .to_hex()
        .to_string()
}

/// The downlink if its MAC is ours (see `Downlink.mac`).
pub fn verify_downlink(key: &[u8; 32], mut dl: Downlink) -> Option<Downlink> {
    let mac = std::mem::take(&mut dl.mac);
    let want = blake3::keyed_hash(key, &dl.encode_to_vec());
    // blake3::Hash compares in constant time.
    let got = <[u8; 32]>::try_from(mac.as_slice()).ok()?;
    (blake3::Hash::from(got) == want).then_some(dl)
}
