//! `PxelinuxName::parse` on arbitrary text. Invariants: the canonical form (Display) parses
//! again to the same canonical form; it is lower-case hex with `-` (hardware names, UUIDs),
//! `default`, or — for hex-IP names only — upper-case hex; and `classify` of
//! `pxelinux.cfg/<canonical>` is that same PXELINUX name.
#![no_main]

use ironpxe::model::addr::PxelinuxName;
use ironpxe::model::resource::{classify, Resource};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(name) = PxelinuxName::parse(s) else {
        return;
    };
    let canonical = name.to_string();
    let again = PxelinuxName::parse(&canonical).unwrap_or_else(|e| {
        panic!("INVARIANT BROKEN: {s:?} parses as {name:?}, whose canonical form {canonical:?} does not parse: {e}")
    });
    assert_eq!(
        again.to_string(),
        canonical,
        "INVARIANT BROKEN: {s:?}: canonical form {canonical:?} is not a fixed point ({again:?})"
    );
    let shape_ok = match name {
        PxelinuxName::Default => canonical == "default",
        PxelinuxName::HexIp(p) => {
            (1..=8).contains(&canonical.len())
                && canonical.len() == usize::from(p.digits())
                && canonical
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'A'..=b'F'))
        }
        PxelinuxName::Uuid(_) => {
            canonical.len() == 36
                && canonical
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f' | b'-'))
        }
        PxelinuxName::Hw(_) => {
            (canonical.starts_with("01-") || canonical.starts_with("20-"))
                && canonical.len() == 20
                && canonical
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f' | b'-'))
        }
    };
    assert!(
        shape_ok,
        "INVARIANT BROKEN: {s:?} parses as {name:?} with canonical form {canonical:?} of the wrong shape or case"
    );
    let path = format!("pxelinux.cfg/{canonical}");
    match classify(&path) {
        Ok(Resource::Pxelinux(n)) if n.to_string() == canonical => {}
        other => panic!(
            "INVARIANT BROKEN: {s:?} parses as {name:?} but {path:?} classifies as {other:?}"
        ),
    }
});
