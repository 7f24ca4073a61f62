// The binary is a thin wrapper: everything lives in the library so tests and
// fuzzers can reach it.
fn main() -> std::process::ExitCode {
    smsgate::cli::main()
}
