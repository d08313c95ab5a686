fn main() -> std::process::ExitCode {
    // Descendants of the children that lose their parent come to us, not to pid 1, so they can
    // be found and killed with their step.
    luaswarm::worker::subprocess::reaper::become_subreaper();
    luaswarm::cli::main()
}
