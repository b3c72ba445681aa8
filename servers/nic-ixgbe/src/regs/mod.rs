//! Register maps: offsets and bit definitions, one file per chip, transcribed from the
//! datasheets as summarised in the project's NIC reference. Nothing here touches hardware.

pub mod igb;
pub mod ixgbe;
