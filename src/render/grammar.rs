//! What a value may contain, per boot-script format: one table of rules, each naming the
//! parser it protects and why.
//!
//! Every value from node state or the request that reaches a script (image references,
//! kernel parameters, the server's URL) is written as one word where the template put it.
//! A rule here refuses a value that the format's own parser would read as something other
//! than one plain word: a line end, a word break, a comment, a command separator, an
//! expansion, a quote. The rules follow the parsers' sources, not a guess:
//!
//! - **iPXE** (`src/image/script.c`, `src/core/exec.c`, `src/core/settings.c`): a script is
//!   split into lines at `\n` (a trailing `\r` dropped, a trailing `\` joining the next
//!   line); a line into words at C `isspace`; a word starting with `#` ends the command
//!   line there (everything after it, `|| goto retry` included, is dropped); the words
//!   `||`, `&&` and `;` separate commands; `${…}` anywhere in a word expands a setting, the
//!   innermost `${` closed by the next `}`. Option parsing (`getopt`) stops at the first
//!   word that is not an option, and every value follows an image reference or is one (an
//!   `http(s)://` URL or a path), so a value is never read as an option.
//! - **GRUB** (`grub-core/script/yylex.l`, `parser.y`): words break at space, tab and
//!   newline and at each of `{ } | & $ ; < >`; `"`, `'` and `\` quote and escape; `$` expands
//!   a variable; `#` at the start of a word comments out the rest of the line; `[[`/`]]` are
//!   tokens no command accepts. Reserved words (`if`, `fi`, …) are plain arguments after a
//!   command name, so they need no rule.
//! - **PXELINUX** (`com32/elflink/ldlinux/readconfig.c`): line based. A line ends at `\n`
//!   and is cut at the first `\r`; every byte up to space is blank; `append` takes the rest
//!   of the line, and `append -` alone means "no parameters". Lines are read in pieces of
//!   4095 bytes: what follows is parsed as a new line, so a long enough value can start a
//!   command of its choosing.
//! - **The Linux kernel** (`lib/cmdline.c`), which every format hands the parameters to:
//!   `"` quotes, joining the words up to the next `"` into one parameter.
//!
//! Display text (names, reasons) is not checked here: `display_text` reduces it to
//! characters no format gives a meaning.

use super::{Format, RenderError, DISPLAY_MAX};

/// The parser that reads a format's output (`boot.ipxe` is an iPXE script too).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Parser {
    Pxelinux,
    Ipxe,
    Grub,
}

impl Parser {
    fn of(format: Format) -> Parser {
        match format {
            Format::Pxelinux => Parser::Pxelinux,
            Format::Ipxe | Format::IpxeEntry => Parser::Ipxe,
            Format::Grub => Parser::Grub,
        }
    }
}

const ALL: &[Parser] = &[Parser::Pxelinux, Parser::Ipxe, Parser::Grub];
const IPXE_GRUB: &[Parser] = &[Parser::Ipxe, Parser::Grub];
const IPXE: &[Parser] = &[Parser::Ipxe];
const GRUB: &[Parser] = &[Parser::Grub];
const PXELINUX: &[Parser] = &[Parser::Pxelinux];

/// Longest value PXELINUX takes: with the template's own text the line stays far below the
/// 4095 bytes after which PXELINUX starts a new line.
const PXELINUX_VALUE_MAX: usize = 1024;

/// The shortest value the length rule refuses, as its sample.
const TOO_LONG: &str = match std::str::from_utf8(&[b'a'; PXELINUX_VALUE_MAX + 1]) {
    Ok(s) => s,
    Err(_) => panic!("ASCII is UTF-8"),
};

/// Longest the kernel parameters may be together. Linux keeps 2048 bytes of command line on
/// x86 and arm64 (`COMMAND_LINE_SIZE`) and boot loaders cut what is longer, losing the
/// parameters that come last (the callback URL, BOOTIF); 512 bytes are left for what the
/// template and the loader add (`initrd=`, `BOOTIF=`, `BOOT_IMAGE=`). With references of at
/// most [`PXELINUX_VALUE_MAX`] it also keeps a PXELINUX `append` line far below the 4095
/// bytes after which PXELINUX reads the rest as a new line — a command the parameters chose.
const COMMAND_LINE_MAX: usize = 1536;

/// One way a value breaks a format's grammar.
struct Rule {
    /// The parsers whose grammar this rule protects.
    parsers: &'static [Parser],
    /// True when the value breaks it.
    breaks: fn(&str) -> bool,
    /// What the operator is told (after "cannot go into a <format> config: ").
    why: &'static str,
    /// A value this rule refuses, for the table's own test.
    #[cfg_attr(not(test), allow(dead_code))]
    sample: &'static str,
}

/// The rules, checked in order; the first that matches is reported.
const RULES: &[Rule] = &[
    Rule {
        parsers: ALL,
        breaks: str::is_empty,
        why: "empty: the next word would take its place",
        sample: "",
    },
    Rule {
        parsers: ALL,
        breaks: |v| v.contains(['\n', '\r']),
        why: "a line break: it would end the line and start a new command",
        sample: "quiet\nkernel",
    },
    Rule {
        parsers: ALL,
        breaks: |v| v.bytes().any(|b| b <= b' ' || b == 0x7f),
        why: "white space or a control character: it would split the value into several words",
        sample: "console=ttyS0\tkernel",
    },
    Rule {
        parsers: ALL,
        breaks: |v| !v.is_ascii(),
        why: "non-ASCII characters: firmware parsers and the kernel read bytes, not UTF-8",
        sample: "caf\u{e9}",
    },
    Rule {
        parsers: ALL,
        breaks: |v| v.contains('"'),
        why: "`\"`: the kernel (and GRUB) would join the words up to the next `\"` into one",
        sample: "a=\"b",
    },
    Rule {
        parsers: PXELINUX,
        breaks: |v| v == "-",
        why: "a lone `-`: PXELINUX reads `append -` as \"no parameters at all\"",
        sample: "-",
    },
    Rule {
        parsers: PXELINUX,
        breaks: |v| v.len() > PXELINUX_VALUE_MAX,
        why: "longer than 1024 bytes: PXELINUX reads a longer line in pieces, the next piece \
              as a command of its own",
        sample: TOO_LONG,
    },
    Rule {
        parsers: IPXE_GRUB,
        breaks: |v| v.starts_with('#'),
        why: "a word starting with `#`: a comment, dropping the rest of the command line",
        sample: "#",
    },
    Rule {
        parsers: IPXE_GRUB,
        breaks: |v| v.contains(';'),
        why: "`;`: a command separator",
        sample: "console=ttyS0;reboot",
    },
    Rule {
        parsers: IPXE_GRUB,
        breaks: |v| v.contains('|'),
        why: "`|`: `||` separates commands (GRUB: any `|` is a pipe)",
        sample: "||",
    },
    Rule {
        parsers: IPXE,
        breaks: |v| v.contains("&&"),
        why: "`&&`: a command separator",
        sample: "&&",
    },
    Rule {
        parsers: GRUB,
        breaks: |v| v.contains('&'),
        why: "`&`: GRUB script syntax (`&`, `&&`) that ends the word",
        sample: "http://x/a?b=1&c=2",
    },
    Rule {
        parsers: IPXE_GRUB,
        breaks: |v| v.contains(['$', '{', '}']),
        why: "`$` or braces: a variable expansion (`${…}`) or a block",
        sample: "x=${net0/mac}",
    },
    Rule {
        parsers: IPXE_GRUB,
        breaks: |v| v.contains('\\'),
        why: "`\\`: an escape (GRUB) or, at a line's end, a line continuation",
        sample: "a\\",
    },
    Rule {
        parsers: GRUB,
        breaks: |v| v.contains('\''),
        why: "`'`: a GRUB quote, joining the words up to the next `'` into one",
        sample: "a='b",
    },
    Rule {
        parsers: GRUB,
        breaks: |v| v.contains(['<', '>']),
        why: "`<` or `>`: GRUB script syntax that ends the word",
        sample: "a>b",
    },
    Rule {
        parsers: GRUB,
        breaks: |v| v == "[[" || v == "]]",
        why: "`[[` or `]]`: a GRUB token no command accepts, failing the whole script",
        sample: "[[",
    },
    Rule {
        parsers: GRUB,
        breaks: |v| v.contains(['(', ')']),
        why: "parentheses: GRUB reads `(hd0,1)/…` as a path on another disk",
        sample: "(hd0,1)/vmlinuz",
    },
];

/// Checks that a value is one word of `format` that cannot end a line, start or end a
/// command, comment out the rest, expand a variable or be split by the format's parser;
/// the error names the field and the rule.
pub fn check_token(field: &'static str, value: &str, format: Format) -> Result<(), RenderError> {
    match problem(value, format) {
        None => Ok(()),
        Some(why) => Err(RenderError::Unsafe {
            field,
            value: value.chars().take(DISPLAY_MAX).collect(),
            format,
            why,
        }),
    }
}

/// Checks the kernel parameters together (each is checked with [`check_token`]): short
/// enough that no boot loader cuts the command line and no PXELINUX line splits.
pub fn check_command_line(params: &[String], format: Format) -> Result<(), RenderError> {
    let len = params.iter().map(|p| p.len() + 1).sum::<usize>();
    if len.saturating_sub(1) <= COMMAND_LINE_MAX {
        return Ok(());
    }
    Err(RenderError::Unsafe {
        field: "kernel parameters",
        value: params.join(" ").chars().take(DISPLAY_MAX).collect(),
        format,
        why: "longer than 1536 bytes together: the boot loader would cut the kernel command \
              line (Linux keeps 2048 bytes), losing BOOTIF and the callback URL at its end",
    })
}

/// The first rule of `format` the value breaks.
fn problem(value: &str, format: Format) -> Option<&'static str> {
    let parser = Parser::of(format);
    RULES
        .iter()
        .find(|r| r.parsers.contains(&parser) && (r.breaks)(value))
        .map(|r| r.why)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The formats whose parser a rule protects.
    fn formats(parsers: &[Parser]) -> Vec<Format> {
        Format::ALL
            .into_iter()
            .filter(|f| parsers.contains(&Parser::of(*f)))
            .collect()
    }

    /// Asserts `value` is refused with `why` in exactly `refused` (and not by that rule
    /// elsewhere).
    fn refused_in(value: &str, why: &str, refused: &[Parser]) {
        for f in Format::ALL {
            let got = problem(value, f);
            if formats(refused).contains(&f) {
                assert_eq!(got, Some(why), "{value:?} in {f}");
            } else {
                assert_ne!(got, Some(why), "{value:?} must pass this rule in {f}");
            }
        }
    }

    fn rule(why_starts: &str) -> &'static Rule {
        RULES
            .iter()
            .find(|r| r.why.starts_with(why_starts))
            .unwrap_or_else(|| panic!("no rule {why_starts:?}"))
    }

    /// Each rule refuses its sample in exactly its formats: the table is its own test, and
    /// a rule added without a sample that it refuses fails here.
    #[test]
    fn every_rule_refuses_its_sample_in_exactly_its_formats() {
        for r in RULES {
            refused_in(r.sample, r.why, r.parsers);
        }
    }

    #[test]
    fn plain_parameters_and_urls_pass_every_format() {
        for v in [
            "console=ttyS0,115200n8",
            "ipa-api-url=http://10.0.2.2:6385",
            "BOOTIF=01-52-54-00-00-00-01",
            "http://10.0.2.2:8080/images/0123456789abcdef/ipa.kernel",
            "/images/0123456789abcdef/ipa.kernel",
            "rd.driver.pre=ib_ipoib",
            "a#b",
            "--",
        ] {
            for f in Format::ALL {
                assert_eq!(problem(v, f), None, "{v:?} in {f}");
            }
        }
    }

    #[test]
    fn empty_values_are_refused_everywhere() {
        refused_in("", rule("empty").why, ALL);
    }

    #[test]
    fn line_breaks_are_refused_everywhere_also_a_lone_carriage_return() {
        // PXELINUX cuts a line at the first `\r`: the rest of `append` would be lost.
        for v in ["a\nkernel", "a\rb", "a\r\n"] {
            refused_in(v, rule("a line break").why, ALL);
        }
    }

    #[test]
    fn white_space_and_control_characters_are_refused_everywhere() {
        // Vertical tab and form feed are `isspace` to iPXE, and every byte up to space is
        // blank to PXELINUX; GRUB splits at space and tab.
        for v in [
            "a b",
            "a\tb",
            "a\x0bb",
            "a\x0cb",
            "a\x1b[2Jb",
            "a\x7fb",
            "a\0b",
        ] {
            refused_in(v, rule("white space").why, ALL);
        }
    }

    #[test]
    fn non_ascii_is_refused_everywhere() {
        for v in ["caf\u{e9}", "a\u{2028}b", "a\u{85}b"] {
            refused_in(v, rule("non-ASCII").why, ALL);
        }
    }

    #[test]
    fn double_quotes_are_refused_everywhere_for_the_kernel() {
        refused_in("a=\"b", rule("`\"`").why, ALL);
    }

    #[test]
    fn a_lone_dash_is_refused_for_pxelinux_only() {
        refused_in("-", rule("a lone `-`").why, PXELINUX);
    }

    #[test]
    fn values_longer_than_a_pxelinux_line_piece_allows_are_refused_for_pxelinux_only() {
        let long = format!("x={}", "a".repeat(PXELINUX_VALUE_MAX));
        refused_in(&long, rule("longer than").why, PXELINUX);
        assert_eq!(problem(&long[..PXELINUX_VALUE_MAX], Format::Pxelinux), None);
    }

    /// The case: `kernel … console=ttyS0 # ipa-api-url=… || goto retry` loses the
    /// callback URL, BOOTIF, the initrd and the retry in iPXE.
    #[test]
    fn a_word_starting_with_hash_is_refused_for_ipxe_and_grub() {
        for v in ["#", "#x", "##"] {
            refused_in(v, rule("a word starting with `#`").why, IPXE_GRUB);
        }
        // Inside a word it is no comment to either parser.
        assert_eq!(problem("a#b", Format::Ipxe), None);
        assert_eq!(problem("a#b", Format::Grub), None);
    }

    #[test]
    fn semicolons_are_refused_for_ipxe_and_grub() {
        refused_in(";", rule("`;`").why, IPXE_GRUB);
        refused_in("console=ttyS0;reboot", rule("`;`").why, IPXE_GRUB);
    }

    #[test]
    fn pipes_are_refused_for_ipxe_and_grub() {
        refused_in("||", rule("`|`").why, IPXE_GRUB);
        refused_in("a|b", rule("`|`").why, IPXE_GRUB);
    }

    #[test]
    fn double_ampersands_are_refused_for_ipxe_but_a_url_query_passes() {
        refused_in("&&", rule("`&&`").why, IPXE);
        assert_eq!(problem("http://x/a?b=1&c=2", Format::Ipxe), None);
        assert_eq!(problem("http://x/a?b=1&c=2", Format::IpxeEntry), None);
    }

    #[test]
    fn any_ampersand_is_refused_for_grub() {
        refused_in("http://x/a?b=1&c=2", rule("`&`").why, GRUB);
    }

    #[test]
    fn expansions_and_braces_are_refused_for_ipxe_and_grub() {
        for v in ["x=${net0/mac}", "$x", "a{", "}"] {
            refused_in(v, rule("`$` or braces").why, IPXE_GRUB);
        }
    }

    #[test]
    fn backslashes_are_refused_for_ipxe_and_grub() {
        refused_in("a\\", rule("`\\`").why, IPXE_GRUB);
    }

    #[test]
    fn single_quotes_are_refused_for_grub() {
        refused_in("a='b", rule("`'`").why, GRUB);
    }

    #[test]
    fn redirections_are_refused_for_grub() {
        refused_in("a>b", rule("`<` or `>`").why, GRUB);
        refused_in("<a", rule("`<` or `>`").why, GRUB);
    }

    #[test]
    fn grub_double_brackets_are_refused_as_words() {
        refused_in("[[", rule("`[[`").why, GRUB);
        refused_in("]]", rule("`[[`").why, GRUB);
        assert_eq!(problem("a[[b", Format::Grub), None);
    }

    #[test]
    fn parentheses_are_refused_for_grub() {
        refused_in("(hd0,1)/vmlinuz", rule("parentheses").why, GRUB);
    }

    #[test]
    fn kernel_parameters_longer_than_a_command_line_are_refused_together() {
        // Two words and the space between them: exactly the maximum, then one byte more.
        let fits = [
            format!("a={}", "x".repeat(765)),
            format!("b={}", "x".repeat(766)),
        ];
        assert_eq!(fits.join(" ").len(), COMMAND_LINE_MAX);
        let over = [fits[0].clone(), format!("{}y", fits[1])];
        for f in Format::ALL {
            assert!(check_command_line(&fits, f).is_ok(), "{f}");
            let err = check_command_line(&over, f).unwrap_err().to_string();
            assert!(
                err.starts_with("kernel parameters = \"a=xxx") && err.contains("1536"),
                "{f}: {err}"
            );
        }
    }

    /// What only a shell would care about is no syntax to PXELINUX, whose `append` takes
    /// the rest of the line as it is.
    #[test]
    fn pxelinux_takes_what_its_line_grammar_allows() {
        for v in [
            "a;b", "a|b", "&&", "$x", "a{b}", "a\\b", "a'b", "a>b", "#x", "(x)",
        ] {
            assert_eq!(problem(v, Format::Pxelinux), None, "{v:?}");
        }
    }
}
