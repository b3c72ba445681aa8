//! libnc2: the netchannel2 and netif ring protocols (no_std + alloc, no OS dependency).
#![cfg_attr(not(test), no_std)]
