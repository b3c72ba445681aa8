//! qpair: the queue-pair channel protocol between netback and nic-ixgbe.
#![cfg_attr(not(test), no_std)]
