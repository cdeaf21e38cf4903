/// A stable 64-bit mix (SplitMix64's finalizer): derives independent, reproducible seeds and
/// assignments (per image, per patient) from one user seed, identically on every platform.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    #[test]
    fn mixes_neighbouring_inputs_apart() {
        assert_ne!(super::mix64(1), super::mix64(2));
        assert_eq!(super::mix64(0), 0);
        assert_eq!(super::mix64(7), super::mix64(7));
    }
}
