fn main() -> std::process::ExitCode {
    rdbvault::cli::main()
}
