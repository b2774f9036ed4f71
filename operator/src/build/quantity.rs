//! Reading Kubernetes resource quantities ("512Mi", "1.5G", "2e9") as numbers, where the
//! operator must compute with them (the broker's memory budget, storage that may only grow).
//! k8s-openapi keeps a quantity as the string the user wrote.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// Why a quantity could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("{0:?} is not a quantity (digits, an optional fraction and a suffix such as Mi or G)")]
    Malformed(String),
    #[error("{0:?} is larger than this operator can compute with")]
    TooLarge(String),
}

/// The quantity in whole units (bytes for memory and storage), rounded up.
pub fn to_units(quantity: &Quantity) -> Result<u64, QuantityError> {
    let text = quantity.0.trim();
    let malformed = || QuantityError::Malformed(text.to_owned());
    let number_end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(number_end);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
        return Err(malformed());
    }
    let (multiplier, divisor) = scale(suffix).ok_or_else(malformed)?;
    // value = (whole.fraction) * multiplier / divisor, computed exactly on integers.
    let digits = format!("{whole}{fraction}");
    let mantissa: u128 = digits.parse().map_err(|_| malformed())?;
    let fraction_scale = 10u128
        .checked_pow(u32::try_from(fraction.len()).map_err(|_| malformed())?)
        .ok_or_else(|| QuantityError::TooLarge(text.to_owned()))?;
    let numerator = mantissa
        .checked_mul(multiplier)
        .ok_or_else(|| QuantityError::TooLarge(text.to_owned()))?;
    let denominator = fraction_scale
        .checked_mul(divisor)
        .ok_or_else(|| QuantityError::TooLarge(text.to_owned()))?;
    u64::try_from(numerator.div_ceil(denominator)).map_err(|_| QuantityError::TooLarge(text.to_owned()))
}

/// (multiplier, divisor) of a suffix: binary (Ki..Ei), decimal (k..E, m), or an exponent.
fn scale(suffix: &str) -> Option<(u128, u128)> {
    let binary = |power: u32| Some((1u128 << (10 * power), 1));
    let decimal = |power: u32| Some((10u128.pow(3 * power), 1));
    match suffix {
        "" => Some((1, 1)),
        "m" => Some((1, 1000)),
        "Ki" => binary(1),
        "Mi" => binary(2),
        "Gi" => binary(3),
        "Ti" => binary(4),
        "Pi" => binary(5),
        "Ei" => binary(6),
        "k" => decimal(1),
        "M" => decimal(2),
        "G" => decimal(3),
        "T" => decimal(4),
        "P" => decimal(5),
        "E" => decimal(6),
        exponent => {
            let power: u32 = exponent.strip_prefix(['e', 'E'])?.parse().ok()?;
            Some((10u128.checked_pow(power)?, 1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn units(text: &str) -> Result<u64, QuantityError> {
        to_units(&Quantity(text.to_owned()))
    }

    #[test]
    fn binary_decimal_and_exponent_suffixes() {
        assert_eq!(units("512Mi"), Ok(512 * 1024 * 1024));
        assert_eq!(units("1Gi"), Ok(1 << 30));
        assert_eq!(units("1.5Gi"), Ok(3 << 29));
        assert_eq!(units("1G"), Ok(1_000_000_000));
        assert_eq!(units("2e3"), Ok(2000));
        assert_eq!(units("123"), Ok(123));
        assert_eq!(units("100k"), Ok(100_000));
    }

    #[test]
    fn fractions_of_a_unit_round_up() {
        assert_eq!(units("1500m"), Ok(2));
        assert_eq!(units("0.1"), Ok(1));
        assert_eq!(units("1000m"), Ok(1));
    }

    #[test]
    fn garbage_and_overflow_are_errors_not_panics() {
        for bad in ["", "Mi", "1.2.3Gi", "12Zi", "-1Gi", "1 Gi", "1e", "e3"] {
            assert!(matches!(units(bad), Err(QuantityError::Malformed(_))), "{bad}");
        }
        assert!(matches!(units("99999999999Ei"), Err(QuantityError::TooLarge(_))));
        assert!(matches!(units("1e400"), Err(QuantityError::Malformed(_))));
    }
}
