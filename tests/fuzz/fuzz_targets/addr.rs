//! Every address parser on arbitrary text. Invariants: any value that parses, written back
//! in every spelling the crate prints (colon, hyphen, raw, Cisco dotted; lower and upper
//! case; with surrounding white space), parses to the same value; the typed parsers agree
//! with `AnyAddr` on which lengths they accept; serde round-trips.
#![no_main]

use std::fmt::Debug;

use ironpxe::model::addr::{
    AnyAddr, ClientId, Guid, IbHwAddr, IpoibAddr, Mac, PxeHwAddr, SystemUuid,
};
use libfuzzer_sys::fuzz_target;
use serde::{de::DeserializeOwned, Serialize};

/// Lower-case hex of `bytes`, `group` bytes per group, joined by `sep`.
fn spell(bytes: &[u8], group: usize, sep: &str) -> String {
    bytes
        .chunks(group)
        .map(|c| c.iter().map(|b| format!("{b:02x}")).collect::<String>())
        .collect::<Vec<_>>()
        .join(sep)
}

/// Each spelling as printed, upper-cased, and padded with white space.
fn variants(spellings: &[String]) -> Vec<String> {
    spellings
        .iter()
        .flat_map(|s| {
            [
                s.clone(),
                s.to_ascii_uppercase(),
                format!(" \t{s}\r\n"),
                format!("\n{}  ", s.to_ascii_uppercase()),
            ]
        })
        .collect()
}

fn round_trip<T, E>(
    input: &str,
    what: &str,
    value: &T,
    spellings: &[String],
    parse: fn(&str) -> Result<T, E>,
) where
    T: PartialEq + Debug + Serialize + DeserializeOwned,
    E: Debug,
{
    for s in variants(spellings) {
        match parse(&s) {
            Ok(v) if v == *value => {}
            other => panic!(
                "INVARIANT BROKEN: {what} {value:?} parsed from {input:?} is spelled {s:?}, which parses to {other:?}"
            ),
        }
    }
    let json = serde_json::to_string(value).expect("serialize");
    match serde_json::from_str::<T>(&json) {
        Ok(v) if v == *value => {}
        other => panic!("INVARIANT BROKEN: {what} {value:?} (from {input:?}) serializes to {json} which reads back as {other:?}"),
    }
}

/// The four spellings the hex addresses print, checked against the crate's own methods.
fn hex_spellings(
    input: &str,
    bytes: &[u8],
    display: String,
    hyphen: String,
    raw: String,
    dotted: String,
) -> Vec<String> {
    let want = [
        spell(bytes, 1, ":"),
        spell(bytes, 1, "-"),
        spell(bytes, 1, ""),
        spell(bytes, 2, "."),
    ];
    let got = [display, hyphen, raw, dotted];
    assert_eq!(
        got, want,
        "INVARIANT BROKEN: output forms of {bytes:02x?} (from {input:?}) are not lower-case colon/hyphen/raw/dotted"
    );
    // Dot-separated pairs are accepted too.
    let mut all = got.to_vec();
    all.push(spell(bytes, 1, "."));
    all
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let mac = Mac::parse(s);
    if let Ok(m) = &mac {
        let sp = hex_spellings(s, &m.0, m.to_string(), m.hyphen(), m.raw(), m.dotted());
        round_trip(s, "Mac", m, &sp, Mac::parse);
    }
    let guid = Guid::parse(s);
    if let Ok(g) = &guid {
        let sp = hex_spellings(s, &g.0, g.to_string(), g.hyphen(), g.raw(), g.dotted());
        round_trip(s, "Guid", g, &sp, Guid::parse);
        let ib_mac = g.ib_mac().0;
        assert_eq!(
            ib_mac,
            [g.0[0], g.0[1], g.0[2], g.0[5], g.0[6], g.0[7]],
            "INVARIANT BROKEN: IB MAC of {g:?}"
        );
    }
    let ipoib = IpoibAddr::parse(s);
    if let Ok(a) = &ipoib {
        let sp = hex_spellings(s, &a.0, a.to_string(), a.hyphen(), a.raw(), a.dotted());
        round_trip(s, "IpoibAddr", a, &sp, IpoibAddr::parse);
        assert_eq!(a.guid().0, a.0[12..], "INVARIANT BROKEN: GUID of {a:?}");
    }
    let cid = ClientId::parse(s);
    if let Ok(c) = &cid {
        let sp = hex_spellings(s, &c.0, c.to_string(), c.hyphen(), c.raw(), c.dotted());
        round_trip(s, "ClientId", c, &sp, ClientId::parse);
        assert_eq!(
            ClientId::new(c.prefix(), c.guid()),
            *c,
            "INVARIANT BROKEN: prefix + GUID of {c:?} do not rebuild it"
        );
    }
    if let Ok(u) = SystemUuid::parse(s) {
        let dashed = u.to_string();
        let bare = spell(&u.0, 1, "");
        let want_dashed = format!(
            "{}-{}-{}-{}-{}",
            &bare[..8],
            &bare[8..12],
            &bare[12..16],
            &bare[16..20],
            &bare[20..]
        );
        assert_eq!(
            dashed, want_dashed,
            "INVARIANT BROKEN: UUID {u:?} (from {s:?}) displays as {dashed:?}"
        );
        let sp = [dashed.clone(), bare, format!("{{{dashed}}}")];
        round_trip(s, "SystemUuid", &u, &sp, SystemUuid::parse);
        assert_eq!(
            u.swapped().swapped(),
            u,
            "INVARIANT BROKEN: swapping {u:?} twice"
        );
    }
    let any = AnyAddr::parse(s);
    if let Ok(a) = &any {
        let b = a.bytes();
        let sp = [
            spell(b, 1, ":"),
            spell(b, 1, "-"),
            spell(b, 1, ""),
            spell(b, 2, "."),
            spell(b, 1, "."),
        ];
        assert_eq!(
            a.to_string(),
            sp[0],
            "INVARIANT BROKEN: AnyAddr display of {a:?}"
        );
        round_trip(s, "AnyAddr", a, &sp, AnyAddr::parse);
        assert!(
            !a.readings().is_empty(),
            "INVARIANT BROKEN: {a:?} has no reading"
        );
    }
    // The typed parsers accept exactly the lengths AnyAddr sorts them into.
    let agree = match any {
        Ok(AnyAddr::Six(m)) => mac == Ok(m) && guid.is_err() && ipoib.is_err() && cid.is_err(),
        Ok(AnyAddr::Eight(g)) => guid == Ok(g) && mac.is_err() && ipoib.is_err() && cid.is_err(),
        Ok(AnyAddr::Twenty(b)) => {
            ipoib == Ok(IpoibAddr(b)) && cid == Ok(ClientId(b)) && mac.is_err() && guid.is_err()
        }
        Err(_) => mac.is_err() && guid.is_err() && ipoib.is_err() && cid.is_err(),
    };
    assert!(
        agree,
        "INVARIANT BROKEN: {s:?}: AnyAddr {any:?} but Mac {mac:?}, Guid {guid:?}, IpoibAddr {ipoib:?}, ClientId {cid:?}"
    );
    if let Ok(ib) = IbHwAddr::parse(s) {
        let want = match any {
            Ok(AnyAddr::Six(m)) => IbHwAddr::Mac(m),
            Ok(AnyAddr::Eight(g)) => IbHwAddr::Guid(g),
            Ok(AnyAddr::Twenty(b)) => IbHwAddr::Guid(ClientId(b).guid()),
            Err(e) => panic!("INVARIANT BROKEN: {s:?} is an IbHwAddr {ib:?} but no AnyAddr: {e:?}"),
        };
        assert_eq!(ib, want, "INVARIANT BROKEN: IbHwAddr of {s:?}");
        let display = ib.to_string();
        assert_eq!(
            IbHwAddr::parse(&display),
            Ok(ib),
            "INVARIANT BROKEN: IbHwAddr {ib:?} displays as {display:?}"
        );
    }
    if let Ok(hw) = PxeHwAddr::parse(s) {
        let display = hw.to_string();
        let again = PxeHwAddr::parse(&display).unwrap_or_else(|e| {
            panic!("INVARIANT BROKEN: PXELINUX name {display:?} (from {s:?}) does not parse: {e}")
        });
        assert_eq!(
            again.to_string(),
            display,
            "INVARIANT BROKEN: PXELINUX name {display:?} (from {s:?}) is not canonical"
        );
    }
});
