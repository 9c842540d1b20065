//! iPXE's own reading of a script, to hold rendered scripts against: lines as
//! `src/image/script.c` (`process_script`) splits them, commands as `src/core/exec.c`
//! (`split_command`, `command_terminator`, `system`) does, and the settings each word
//! expands as `src/core/settings.c` (`expand_settings`) finds them. Written from those
//! sources step by step, so that what it finds is what iPXE would run; `self_check` pins it
//! to known lines.

/// One command iPXE would run (or skip, after `||`/`&&`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    /// The script line it is on (0-based, a continued line counted once).
    pub line: usize,
    /// The label its line defines (`:boot`), on every command of that line.
    pub label: Option<String>,
    /// Its words before expansion; empty for an empty command (a blank or comment line, or
    /// nothing between two separators), which iPXE runs as "do nothing".
    pub words: Vec<String>,
    /// The separator after it: `||`, `&&` or `;`; `None` at the end of the line or at a
    /// comment.
    pub then: Option<&'static str>,
    /// The settings its words expand, in the order iPXE expands them (innermost first),
    /// each inner expansion replaced by nothing.
    pub expansions: Vec<String>,
}

impl Command {
    /// The command's name: its first word.
    pub fn name(&self) -> Option<&str> {
        self.words.first().map(String::as_str)
    }

    /// What fixes the script's shape: everything but the arguments, which node data
    /// legitimately changes.
    pub fn shape(
        &self,
    ) -> (
        usize,
        Option<&str>,
        Option<&str>,
        Option<&'static str>,
        &[String],
    ) {
        (
            self.line,
            self.label.as_deref(),
            self.name(),
            self.then,
            &self.expansions,
        )
    }
}

/// iPXE's `isspace` (`include/ctype.h`): space, `\f`, `\n`, `\r`, `\t`, `\v`.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\x0c' | b'\n' | b'\r' | b'\t' | b'\x0b')
}

/// The commands of a script, in order. `Err` when iPXE would stop reading it: a script
/// whose last line ends in a backslash continuation.
pub fn parse(script: &[u8]) -> Result<Vec<Command>, String> {
    let mut commands = Vec::new();
    for (n, line) in lines(script)?.into_iter().enumerate() {
        let (label, rest) = split_label(&line);
        commands.extend(system(rest).into_iter().map(|(words, then)| Command {
            line: n,
            label: label.clone(),
            expansions: words.iter().flat_map(|w| expansions(w)).collect(),
            words,
            then,
        }));
    }
    Ok(commands)
}

/// `process_script`: lines end at `\n`; a trailing `\r` is dropped; a trailing `\` joins
/// the next line (and a script ending in one is an error); the loop stops once the offset
/// passes the end, so a final `\n` adds no empty line.
fn lines(script: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    let mut line = Vec::new();
    let mut offset = 0;
    loop {
        let rest = &script[offset..];
        let (frag, next) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&rest[..i], offset + i + 1),
            None => (rest, script.len() + 1),
        };
        line.extend_from_slice(frag);
        offset = next;
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if line.last() == Some(&b'\\') {
            line.pop();
            if offset < script.len() {
                continue;
            }
            return Err("the last line ends in a backslash continuation".into());
        }
        out.push(std::mem::take(&mut line));
        if offset >= script.len() {
            return Ok(out);
        }
    }
}

/// `process_script`: after leading white space, `:name` is a label; the command starts
/// after the one character that ends the label.
fn split_label(line: &[u8]) -> (Option<String>, &[u8]) {
    let start = line
        .iter()
        .position(|&b| !is_space(b))
        .unwrap_or(line.len());
    let command = &line[start..];
    let Some(after) = command.strip_prefix(b":") else {
        return (None, command);
    };
    let end = after
        .iter()
        .position(|&b| is_space(b))
        .unwrap_or(after.len());
    let label = String::from_utf8_lossy(&after[..end]).into_owned();
    (Some(label), after.get(end + 1..).unwrap_or(&[]))
}

/// `system`: the line split into words at white space (`split_command`), then into
/// commands at each terminator (`command_terminator`): a word starting with `#` ends the
/// line, `||`, `&&` and `;` end a command.
fn system(line: &[u8]) -> Vec<(Vec<String>, Option<&'static str>)> {
    let words: Vec<String> = line
        .split(|&b| is_space(b))
        .filter(|w| !w.is_empty())
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect();
    let mut commands = Vec::new();
    let mut current = Vec::new();
    for w in words {
        let then = match w.as_str() {
            _ if w.starts_with('#') => {
                commands.push((std::mem::take(&mut current), None));
                return commands;
            }
            "||" => "||",
            "&&" => "&&",
            ";" => ";",
            _ => {
                current.push(w);
                continue;
            }
        };
        commands.push((std::mem::take(&mut current), Some(then)));
    }
    commands.push((current, None));
    commands
}

/// `expand_settings`: repeatedly the last `${` before the first `}` that follows one,
/// replaced by the setting's value (here: nothing); the names in that order.
fn expansions(word: &str) -> Vec<String> {
    let mut s = word.as_bytes().to_vec();
    let mut names = Vec::new();
    loop {
        let mut start = None;
        let mut end = None;
        for i in 0..s.len() {
            if s[i] == b'$' && s.get(i + 1) == Some(&b'{') {
                start = Some(i);
            }
            if start.is_some() && s[i] == b'}' {
                end = Some(i);
                break;
            }
        }
        let (Some(start), Some(end)) = (start, end) else {
            return names;
        };
        names.push(String::from_utf8_lossy(&s[start + 2..end]).into_owned());
        s.drain(start..=end);
    }
}

/// Pins the reader to what iPXE does with known lines; panics on a difference.
pub fn self_check() {
    let names = |script: &str| -> Vec<(Option<String>, Option<&'static str>)> {
        parse(script.as_bytes())
            .unwrap_or_else(|e| panic!("ipxe self-check: {script:?}: {e}"))
            .iter()
            .map(|c| (c.name().map(str::to_owned), c.then))
            .collect()
    };
    let some = |s: &str| Some(s.to_owned());
    // The magic line is a comment: one empty command. A final newline adds no line.
    assert_eq!(names("#!ipxe\n"), [(None, None)]);
    // A `#`-led word drops the rest of the line, `|| goto retry` included.
    assert_eq!(
        names("kernel http://k console=ttyS0 # x initrd=initrd || goto retry"),
        [(some("kernel"), None)]
    );
    assert_eq!(
        names("kernel http://k a#b || goto retry"),
        [(some("kernel"), Some("||")), (some("goto"), None)]
    );
    // Separators only as whole words; an empty command after a trailing `||`.
    assert_eq!(
        names("iseq ${i} ${attempts} && goto fail ||"),
        [
            (some("iseq"), Some("&&")),
            (some("goto"), Some("||")),
            (None, None)
        ]
    );
    assert_eq!(
        names("echo a||b ; echo c"),
        [(some("echo"), Some(";")), (some("echo"), None)]
    );
    // Labels, white space, `\r\n` and continuations.
    let c = parse(b" :boot\r\nimgfree\x0bx\\\n y\n").expect("parses");
    assert_eq!(c.len(), 2);
    assert_eq!((c[0].label.as_deref(), c[0].name()), (Some("boot"), None));
    assert_eq!(c[1].words, ["imgfree", "x", "y"]);
    assert!(parse(b"echo a\\").is_err());
    // Nested expansions, innermost first.
    let c = parse(b"chain http://s/ipxe/${net${netid}/mac:hexhyp}").expect("parses");
    assert_eq!(c[0].expansions, ["netid", "net/mac:hexhyp"]);
}
