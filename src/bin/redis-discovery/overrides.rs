//! The operator's overrides: `drain`, `undrain`, `weight`, `disable` and
//! `overrides`.

use crate::{Error, Global};

/// `drain SERVICE ADDR`: weight 0 until `undrain`.
pub(crate) async fn drain(_g: &Global, _service: &str, _addr: &str) -> Result<(), Error> {
    Err("drain: not built yet".into())
}

/// `undrain SERVICE ADDR`: removes the instance's override.
pub(crate) async fn undrain(_g: &Global, _service: &str, _addr: &str) -> Result<(), Error> {
    Err("undrain: not built yet".into())
}

/// `weight SERVICE ADDR N`.
pub(crate) async fn weight(
    _g: &Global,
    _service: &str,
    _addr: &str,
    _weight: u32,
) -> Result<(), Error> {
    Err("weight: not built yet".into())
}

/// `disable SERVICE ADDR`: hidden from resolvers until `undrain`.
pub(crate) async fn disable(_g: &Global, _service: &str, _addr: &str) -> Result<(), Error> {
    Err("disable: not built yet".into())
}

/// `overrides [SERVICE] [--json]`.
pub(crate) async fn list(_g: &Global, _service: Option<&str>, _json: bool) -> Result<(), Error> {
    Err("overrides: not built yet".into())
}
