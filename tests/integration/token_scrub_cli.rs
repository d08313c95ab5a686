//! No token the engine handed out is stored or printed: children that print their environment
//! (with `SWARM_TOKEN`) to stderr and stdout, in a result, an output event and a failure, leave
//! only its fingerprint in `swarm run`'s output and events, the journal file, and `swarm runs
//! show` and `swarm runs events`.

use crate::util::bin::{stderr, stdout, swarm_in, write};

/// How every token's text begins (URL-safe base64 of `{"agent_id":`).
const TOKEN_START: &str = "eyJhZ2VudF9pZCI6";

#[test]
fn a_child_printing_its_environment_leaks_no_token() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let bp = write(
        dir.path(),
        "leaky.lua",
        &format!(
            r#"local swarm = require("swarm")
local F = swarm.flow
local function sh(script, extra)
  local spec = {{ program = "/bin/sh", args = {{ "-c", script }} }}
  for k, v in pairs(extra or {{}}) do spec[k] = v end
  return {{ kind = "subprocess", spec = spec }}
end
return swarm.blueprint({{
  id = "leaky",
  agents = {{
    plain = sh([[printf '%s\n' "$SWARM_TOKEN" >> {d}/tokens; env >&2; env]]),
    stream = sh([[printf '%s\n' "$SWARM_TOKEN" >> {d}/tokens
      printf '{{"type":"progress","stage":"env","note":"%s"}}\n' "SWARM_TOKEN=$SWARM_TOKEN"
      printf '{{"type":"final","content":{{"kind":"inline","value":"%s"}},"ok":true}}\n' "$SWARM_TOKEN"]],
      {{ stream_mode = "ndjson_lines" }}),
    fails = sh([[printf '%s\n' "$SWARM_TOKEN" >> {d}/tokens; env >&2; echo "token: $SWARM_TOKEN" >&2; exit 3]]),
  }},
  flow = F.seq({{
    F.step({{ agent = "plain", input = 1, out = "$.plain" }}),
    F.step({{ agent = "stream", input = 2, out = "$.stream" }}),
    F.step({{ agent = "fails", input = 3, out = "$.fails" }}),
  }}),
}})
"#
        ),
    );
    let state = dir.path().join("state.db");
    let state = state.to_str().unwrap();
    let run = swarm_in(dir.path(), &["run", &bp, "--state", state, "--events", "ndjson"]);
    assert_eq!(run.status.code(), Some(1), "the last step fails: {}", stderr(&run));
    let tokens: Vec<String> =
        std::fs::read_to_string(dir.path().join("tokens")).unwrap().lines().map(str::to_string).collect();
    assert_eq!(tokens.len(), 3, "every child saw its token");
    let id = stderr(&run)
        .lines()
        .next()
        .unwrap()
        .strip_prefix("run ")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();

    let mut seen = vec![("swarm run stdout".to_string(), stdout(&run)), ("swarm run stderr".to_string(), stderr(&run))];
    for args in [vec!["show", &id], vec!["show", &id, "--json"], vec!["events", &id]] {
        let mut all = vec!["runs", "--state", state];
        all.extend(args.iter().copied());
        let out = swarm_in(dir.path(), &all);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        seen.push((format!("swarm runs {}", args.join(" ")), stdout(&out)));
    }
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap().to_string_lossy().starts_with("state.db") {
            let bytes = std::fs::read(&path).unwrap();
            seen.push((path.display().to_string(), String::from_utf8_lossy(&bytes).into_owned()));
        }
    }
    for (what, text) in &seen {
        for token in &tokens {
            assert!(!text.contains(token.as_str()), "{what} holds a token:\n{text}");
        }
        assert!(!text.contains(TOKEN_START), "{what} holds something like a token:\n{text}");
    }
    // The fingerprints stand in: the events name the stream child's token by it.
    let events = &seen.iter().find(|(w, _)| w.starts_with("swarm runs events")).unwrap().1;
    assert!(events.contains("SWARM_TOKEN=[token "), "{events}");
    let shown = &seen[3].1;
    assert!(shown.contains("token: [token "), "the failure's stderr tail: {shown}");
}
