fn main() -> anyhow::Result<()> {
    hearth::cli::main()
}
