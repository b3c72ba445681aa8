//! ixgbe-model: a register-level software model of the Intel 82599 for host tests.
