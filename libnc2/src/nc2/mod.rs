//! netchannel2: a pair of one-way byte rings in shared memory carrying
//! variable-size messages. `layout` is the shared memory map, `ring` the
//! byte ring, `msg` the message formats, `endpoint` the flow control both
//! ends share, and `frontend`/`backend` the two public ends.

pub mod backend;
pub mod endpoint;
pub mod frontend;
pub mod layout;
pub mod msg;
pub mod ring;

pub use backend::Backend;
pub use endpoint::{Config, Event, Role, Status};
pub use frontend::Frontend;
pub use layout::ChannelMem;
pub use msg::{
    Fragment, MAX_FRAGMENTS, MAX_MESSAGE_SIZE, MAX_PACKET, MAX_PREFIX, Offload, PacketKind,
    PacketMeta, PacketView, PostedBuffer, Segmentation,
};
