//! Fuzz target: `mac_from_edns` on an OPT record whose options come from the input,
//! both as one raw option of the MAC codes and through the wire parser.
#![no_main]

use hickory_proto::op::{Edns, Message};
use hickory_proto::rr::rdata::opt::EdnsOption;
use libfuzzer_sys::fuzz_target;
use metaguard::clients::{EDNS_MAC_RAW, EDNS_MAC_TEXT, mac_from_edns};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let code = if sel & 1 == 0 { EDNS_MAC_RAW } else { EDNS_MAC_TEXT };
    let mut e = Edns::new();
    e.options_mut().insert(EdnsOption::Unknown(code, rest.to_vec()));
    let _ = mac_from_edns(&e);
    // The bytes as OPT RDATA of a query: header, root question, then the OPT record.
    let Ok(rdlen) = u16::try_from(rest.len()) else {
        return;
    };
    let mut wire = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 1];
    wire.extend_from_slice(&[0, 0, 41, 4, 0xd0, 0, 0, 0, 0]);
    wire.extend_from_slice(&rdlen.to_be_bytes());
    wire.extend_from_slice(rest);
    if let Ok(m) = Message::from_vec(&wire)
        && let Some(e) = m.edns.as_ref()
    {
        let _ = mac_from_edns(e);
    }
});
