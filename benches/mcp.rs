//! `swarm mcp` on the release binary, driven by the MCP SDK's client over stdio: the time from
//! `start_run` (with `wait_ms`) to its answer with the final ctx, for a one-step run, against the
//! run's own duration as the journal records it. `cargo bench --bench mcp` prints p50 and p90 of
//! both and of the difference, over `MCP_RUNS` runs (200).

use std::time::{Duration, Instant};

use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::TokioChildProcess;
use serde_json::json;

const SCRIPT: &str = r#"local swarm = require("swarm")
swarm.expose(swarm.blueprint({
  id = "one",
  agents = { echo = function(input) return input end },
  flow = swarm.flow.step({ agent = "echo", input = swarm.flow.p("$.n"), out = "$.echoed" }),
}))
"#;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let runs: usize = std::env::var("MCP_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("s.lua"), SCRIPT).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_swarm"));
        command.current_dir(dir.path()).args(["mcp", "s.lua"]);
        let (transport, _) = TokioChildProcess::builder(command).stderr(std::process::Stdio::null()).spawn().unwrap();
        let client = ().serve(transport).await.unwrap();
        let (mut total, mut own, mut over) = (Vec::new(), Vec::new(), Vec::new());
        for n in 0..runs {
            let args = json!({"blueprint": "one", "input": {"n": n}, "wait_ms": 10_000});
            let params = CallToolRequestParams::new("start_run").with_arguments(args.as_object().unwrap().clone());
            let start = Instant::now();
            let result = client.call_tool(params).await.unwrap();
            let elapsed = start.elapsed();
            let run = result.structured_content.expect("a run");
            assert_eq!(run["status"], "finished", "{run}");
            let duration = run["duration_ms"].as_f64().unwrap_or(0.0);
            let ms = elapsed.as_secs_f64() * 1e3;
            total.push(ms);
            own.push(duration);
            over.push(ms - duration);
        }
        for v in [&mut total, &mut own, &mut over] {
            v.sort_by(f64::total_cmp);
        }
        println!("swarm mcp, start_run with wait_ms of a one-step run, {runs} runs (journal: sqlite):");
        println!("  call → final ctx:  p50 {:.2} ms, p90 {:.2} ms", percentile(&total, 0.5), percentile(&total, 0.9));
        println!("  the run itself:    p50 {:.2} ms, p90 {:.2} ms", percentile(&own, 0.5), percentile(&own, 0.9));
        println!("  overhead:          p50 {:.2} ms, p90 {:.2} ms", percentile(&over, 0.5), percentile(&over, 0.9));
        let _ = client.cancel().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    });
}
