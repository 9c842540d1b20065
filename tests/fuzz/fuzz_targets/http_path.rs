//! An HTTP request path, as the server takes it: `percent_decode`, then `classify`, then
//! `Roots::resolve` for static files. Invariants: a static path or image key/name never has a
//! `..` or empty component, NUL/control bytes, a leading `/` or a `\`; resolving it against
//! a root holding symlinks out of it only ever yields regular files inside the canonical
//! root; `classify` is the same for the decoded path and for its normalised form.
#![no_main]

use ironpxe::model::paths::{normalize, PathError};
use ironpxe::model::resource::{classify, Resource};
use ironpxe::serving::web::percent_decode;
use ironpxe_fuzz::{check_inside_root, check_resource_paths, fixture};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let raw = String::from_utf8_lossy(data);
    let f = fixture();
    let Some(path) = percent_decode(&raw) else {
        return;
    };
    if path.contains('\0') {
        panic!("INVARIANT BROKEN: percent_decode({raw:?}) kept a NUL: {path:?}");
    }
    let res = match classify(&path) {
        Ok(r) => r,
        Err(e) => {
            // A refused name must be refused for a reason it really has.
            let why_ok = match e {
                PathError::Control => path.bytes().any(|b| b < 0x20 || b == 0x7f),
                PathError::TooLong => path.len() > 1024,
                PathError::Traversal => path.contains(".."),
                PathError::Empty => true,
                PathError::Escapes | PathError::NotFound => false,
            };
            assert!(
                why_ok,
                "INVARIANT BROKEN: {raw:?} -> {path:?} refused as {e:?}"
            );
            return;
        }
    };
    check_resource_paths(&res, &path);
    let normal = normalize(&path).unwrap_or_else(|e| {
        panic!("INVARIANT BROKEN: {path:?} classifies as {res:?} but does not normalise: {e:?}")
    });
    assert_eq!(
        classify(&normal).as_ref(),
        Ok(&res),
        "INVARIANT BROKEN: {path:?} and its normal form {normal:?} classify differently"
    );
    if let Resource::Static(p) = &res {
        match f.roots.resolve(p) {
            Ok(file) => check_inside_root(&file, &path),
            Err(PathError::NotFound | PathError::Escapes) => {}
            Err(e) => panic!(
                "INVARIANT BROKEN: checked static path {p:?} (from {path:?}) refused by resolve as {e:?}"
            ),
        }
    }
});
