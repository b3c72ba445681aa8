//! nc2dd-abi: formats shared by the kernel, the servers and the host image tool.
#![no_std]
pub mod system_table;
