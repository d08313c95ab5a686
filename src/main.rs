fn main() -> std::process::ExitCode {
    luaswarm::cli::main()
}
