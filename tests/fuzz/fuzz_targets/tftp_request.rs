//! A TFTP read request's file name, down the path the TFTP handler takes: the name up to its
//! NUL as UTF-8 (else refused), `classify`, then `App::answer` against the example state
//! and a served root with symlinks out of it. Invariants: never panics; a file answer is a
//! regular file inside the canonical root; a config answer is a non-empty body; no answer is
//! an error or pending (the example nodes all render; there is no image cache).
#![no_main]

use ironpxe::model::resource::{classify, GrubFile, GrubRequest, Resource};
use ironpxe::render::Format;
use ironpxe::serving::app::Answer;
use ironpxe_fuzz::{check_inside_root, check_resource_paths, example_app, tftp_server};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let name = data.split(|&b| b == 0).next().unwrap_or_default();
    let Ok(name) = std::str::from_utf8(name) else {
        return;
    };
    let app = example_app();
    let Ok(res) = classify(name) else {
        return;
    };
    check_resource_paths(&res, name);
    match app.answer(&res, &tftp_server(), &app.roots) {
        Answer::File { path, len } => {
            check_inside_root(&path, name);
            let real = std::fs::metadata(&path).map(|m| m.len()).ok();
            assert_eq!(
                real,
                Some(len),
                "INVARIANT BROKEN: {name:?}: answered length {len} of {}",
                path.display()
            );
        }
        Answer::Config(c) => {
            assert!(
                !c.body.trim().is_empty(),
                "INVARIANT BROKEN: {name:?} ({res:?}) answers an empty {} config",
                c.format
            );
            if c.format == Format::Pxelinux || c.format == Format::Grub {
                assert!(
                    c.body.ends_with('\n'),
                    "INVARIANT BROKEN: {name:?}: {} config does not end with a newline:\n{}",
                    c.format,
                    c.body
                );
            }
            if c.format == Format::Ipxe || c.format == Format::IpxeEntry {
                assert!(
                    c.body.starts_with("#!ipxe\n"),
                    "INVARIANT BROKEN: {name:?}: iPXE script without #!ipxe:\n{}",
                    c.body
                );
            }
        }
        Answer::NotFound(_) => {
            assert!(
                !matches!(
                    res,
                    Resource::Grub(GrubRequest {
                        file: GrubFile::Master,
                        ..
                    }) | Resource::IpxeEntry
                ),
                "INVARIANT BROKEN: {name:?} ({res:?}) not found"
            );
        }
        Answer::Refused(_) => {
            // A GRUB name outside Ironic's layout is looked up as a static file first.
            let static_lookup = match &res {
                Resource::Static(_) => true,
                Resource::Grub(g) => !g.in_ironic_layout(),
                _ => false,
            };
            assert!(
                static_lookup,
                "INVARIANT BROKEN: {name:?} ({res:?}) refused, but only static lookups can be"
            );
        }
        Answer::Pending(_) => {
            panic!("INVARIANT BROKEN: {name:?} ({res:?}) pending without an image cache")
        }
        Answer::Error(e) | Answer::Unavailable(e) => {
            panic!("INVARIANT BROKEN: {name:?} ({res:?}) failed on the example state: {e}")
        }
        Answer::Rendering(_) => {
            panic!("INVARIANT BROKEN: {name:?} ({res:?}) an in-process render left pending")
        }
    }
});
