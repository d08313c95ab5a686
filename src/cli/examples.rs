//! The "Examples:" section at the end of every `--help`: real invocations, on files under
//! examples/ and with flags the command takes (tests/cli_help.rs parses each one and checks
//! that the files exist).

pub const SWARM: &str = r#"Examples:
  swarm check examples/hello.lua
  swarm run examples/hello.lua --input '{"name":"you"}'
  swarm runs show r-1a2b3c4d5e6f"#;

pub const CHECK: &str = r#"Examples:
  swarm check examples/review.lua
  swarm check examples/pipeline.lua --load-timeout 2000"#;

pub const COMPILE: &str = r#"Examples:
  swarm compile examples/pipeline.lua > pipeline.json"#;

pub const RUN: &str = r#"Examples:
  swarm run examples/hello.lua --input '{"name":"you"}'
  swarm run examples/pipeline.lua --input '{"topic":"lua"}' --events ndjson 2> events.ndjson
  swarm run examples/hello.lua --input '{"name":"you"}' --watch --state memory
  swarm run examples/approval.lua --input '{"title":"v2"}' --detach"#;

pub const RUNS: &str = r#"Examples:
  swarm runs
  swarm runs show r-1a2b3c4d5e6f --state .swarm/state.db"#;

pub const RUNS_LIST: &str = r#"Examples:
  swarm runs list --json --state .swarm/state.db"#;

pub const RUNS_SHOW: &str = r#"Examples:
  swarm runs show r-1a2b3c4d5e6f --json | jq .steps"#;

pub const RUNS_EVENTS: &str = r#"Examples:
  swarm runs events r-1a2b3c4d5e6f | grep attempt_finished"#;

pub const RUNS_RESUME: &str = r#"Examples:
  swarm runs resume r-1a2b3c4d5e6f --state .swarm/state.db"#;

pub const RUNS_SIGNAL: &str = r#"Examples:
  swarm run examples/approval.lua --input '{"title":"v2"}' --detach
  swarm runs signal r-1a2b3c4d5e6f approve --value '{"ok":true}'"#;

pub const RUNS_RERUN: &str = r#"Examples:
  swarm runs rerun r-1a2b3c4d5e6f --from shout --events ndjson"#;

pub const SERVE: &str = r#"Examples:
  swarm serve examples/serve/ticker.lua
  swarm serve examples/serve/ticker.lua --repl --state memory
  swarm serve examples/serve/api.lua --listen 127.0.0.1:8080
  swarm serve examples/serve/api.lua --listen unix:/tmp/swarm.sock --state memory"#;

pub const MCP: &str = r#"Examples:
  swarm mcp examples/serve/api.lua
  swarm mcp examples/serve/remote.lua --state memory"#;

pub const TOKEN: &str = r#"Examples:
  swarm token --help
  swarm token mint --role observer --ttl 3600
  swarm token revoke 3f2a9c01b7de"#;

pub const TOKEN_MINT: &str = r#"Examples:
  swarm token mint --role observer --ttl 3600 > observer.token
  swarm token mint --role worker --max-uses 100 --agent builder-7"#;

pub const TOKEN_REVOKE: &str = r#"Examples:
  swarm token revoke 3f2a9c01b7de --state .swarm/state.db"#;

pub const GRAPH: &str = r#"Examples:
  swarm graph examples/review.lua
  swarm graph examples/review.lua --format dot | dot -Tsvg > review.svg"#;

pub const INIT: &str = r#"Examples:
  swarm init my-swarm
  swarm run my-swarm/main.lua --input '{"name":"you"}'"#;

pub const TYPES: &str = r#"Examples:
  swarm types .luals"#;

pub const REPL: &str = r#"Examples:
  swarm repl examples/hello.lua
  printf ':run {"name":"you"}\n' | swarm repl examples/hello.lua"#;
