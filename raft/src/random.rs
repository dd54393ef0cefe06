/// `N` bytes from the operating system's CSPRNG (request ids, salts, keys, generated
/// passwords).
pub fn random<const N: usize>() -> std::io::Result<[u8; N]> {
    let mut out = [0u8; N];
    getrandom::getrandom(&mut out).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(out)
}
