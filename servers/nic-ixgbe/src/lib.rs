//! nic-ixgbe driver core: hardware-independent logic, generic over register access and DMA.
#![cfg_attr(not(test), no_std)]
