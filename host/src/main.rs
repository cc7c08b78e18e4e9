// The host allocates and frees per request (stores, bodies, strings crossing into guests);
// mimalloc is markedly faster at that than glibc's allocator and, in the static image, musl's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    replog::cli::main()
}
