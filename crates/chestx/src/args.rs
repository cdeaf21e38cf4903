//! Argument types shared by several commands.

use chestx_data::{BlankAs, UncertainAs};
use clap::ValueEnum;

#[derive(Clone, Copy, ValueEnum)]
pub enum UncertainArg {
    /// Leave uncertain labels out of the loss and the AUCs (U-Ignore).
    Ignore,
    /// Count them negative (U-Zeros).
    Zeros,
    /// Count them positive (U-Ones).
    Ones,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum BlankArg {
    /// Not mentioned counts as negative.
    Zeros,
    /// Not mentioned is unknown: left out of the loss and the AUCs.
    Ignore,
}

impl From<UncertainArg> for UncertainAs {
    fn from(a: UncertainArg) -> UncertainAs {
        match a {
            UncertainArg::Ignore => UncertainAs::Ignore,
            UncertainArg::Zeros => UncertainAs::Zeros,
            UncertainArg::Ones => UncertainAs::Ones,
        }
    }
}

impl From<BlankArg> for BlankAs {
    fn from(a: BlankArg) -> BlankAs {
        match a {
            BlankArg::Zeros => BlankAs::Zeros,
            BlankArg::Ignore => BlankAs::Ignore,
        }
    }
}
