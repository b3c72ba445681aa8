//! nc2dd-tests: harnesses that boot nc2dd images and watch their serial output.
pub mod guests;
pub mod netpeer;
pub mod qemu;
pub mod xenbed;
