//! The user address space of one task, derived from the system table.
//!
//! Owns: where a task's info page, stack, heap and channels go (see `nc2dd_abi::layout`) and the
//! task-info page's contents. Invariants of every plan: regions lie in user space and do not
//! overlap; only the image's text is executable (nothing here is); the page below the stack is
//! left unmapped as a guard; channel `i` of the system sits at the same address in both of its
//! tasks and at no address in any other task.

use alloc::vec::Vec;
use nc2dd_abi::layout::{
    self, CHANNEL_BASE, CHANNEL_STRIDE, ChannelInfo, HEAP_BASE, INFO_BASE, MAX_TASK_CHANNELS,
    STACK_TOP, TaskInfo,
};
use nc2dd_abi::system_table::{NO_BIT, Table};

pub const PAGE: u64 = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Info,
    Stack,
    Heap,
    /// Channel by its index in the system table.
    Channel(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub start: u64,
    pub pages: u64,
    /// Writable by the task (never executable).
    pub writable: bool,
    pub kind: Kind,
}

impl Mapping {
    pub fn end(&self) -> u64 {
        self.start + self.pages * PAGE
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpaceError {
    TooManyChannels { task: usize },
    NoSuchTask(usize),
}

/// Address of channel `index` (system-wide) in the tasks at its ends.
pub fn channel_base(index: usize) -> u64 {
    CHANNEL_BASE + index as u64 * CHANNEL_STRIDE
}

/// The regions of task `index` other than its ELF image.
pub fn plan(table: &Table<'_>, index: usize) -> Result<Vec<Mapping>, SpaceError> {
    let task = table.task(index).ok_or(SpaceError::NoSuchTask(index))?;
    let mut out = Vec::new();
    out.push(Mapping {
        start: INFO_BASE,
        pages: 1,
        writable: false,
        kind: Kind::Info,
    });
    out.push(Mapping {
        start: STACK_TOP - task.stack,
        pages: task.stack / PAGE,
        writable: true,
        kind: Kind::Stack,
    });
    if task.heap > 0 {
        out.push(Mapping {
            start: HEAP_BASE,
            pages: task.heap / PAGE,
            writable: true,
            kind: Kind::Heap,
        });
    }
    let mut channels = 0;
    for (i, ch) in table.channels().enumerate() {
        if ch.ends.iter().any(|e| e.task == index) {
            channels += 1;
            if channels > MAX_TASK_CHANNELS {
                return Err(SpaceError::TooManyChannels { task: index });
            }
            out.push(Mapping {
                start: channel_base(i),
                pages: ch.size / PAGE,
                writable: true,
                kind: Kind::Channel(i),
            });
        }
    }
    Ok(out)
}

/// The info page of task `index`; `generations[t]` is task `t`'s current generation and
/// `cmdline` the kernel command line (the task gets its `nc2dd.<task>.key=value` words).
pub fn info(
    table: &Table<'_>,
    index: usize,
    generations: &[u32],
    cmdline: &str,
) -> Result<TaskInfo, SpaceError> {
    let task = table.task(index).ok_or(SpaceError::NoSuchTask(index))?;
    let mut info = TaskInfo::empty();
    info.index = index as u32;
    info.generation = generations.get(index).copied().unwrap_or(0);
    layout::set_name(&mut info.name, &mut info.name_len, task.name);
    info.task_count = table.task_count() as u32;
    info.fault_bit = task.fault_bit.unwrap_or(NO_BIT);
    info.timer_bit = task.timer_bit.unwrap_or(NO_BIT);
    if let Some(x) = task.xen {
        info.xen_event_bit = x.event_bit;
        info.xen_grant_window = x.grant_window;
    }
    info.heap_base = if task.heap > 0 { HEAP_BASE } else { 0 };
    info.heap_size = task.heap;
    info.stack_top = STACK_TOP;
    info.stack_size = task.stack;
    let mut n = 0;
    for (i, ch) in table.channels().enumerate() {
        let Some(me) = ch.ends.iter().position(|e| e.task == index) else {
            continue;
        };
        if n == MAX_TASK_CHANNELS {
            return Err(SpaceError::TooManyChannels { task: index });
        }
        let peer = ch.ends[1 - me].task;
        let mut c = ChannelInfo::empty();
        layout::set_name(&mut c.name, &mut c.name_len, ch.name);
        c.peer = peer as u32;
        c.peer_generation = generations.get(peer).copied().unwrap_or(0);
        c.kick_bit = ch.ends[me].kick_bit;
        c.base = channel_base(i);
        c.size = ch.size;
        info.channels[n] = c;
        n += 1;
    }
    info.channel_count = n as u32;
    let mut len = 0;
    for word in cmdline.split_ascii_whitespace() {
        let Some(rest) = word.strip_prefix("nc2dd.") else {
            continue;
        };
        let Some(arg) = rest
            .strip_prefix(task.name)
            .and_then(|r| r.strip_prefix('.'))
        else {
            continue;
        };
        let sep = usize::from(len > 0);
        if len + sep + arg.len() > info.args.len() {
            break;
        }
        if sep == 1 {
            info.args[len] = b' ';
        }
        info.args[len + sep..len + sep + arg.len()].copy_from_slice(arg.as_bytes());
        len += sep + arg.len();
    }
    info.args_len = len as u32;
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nc2dd_abi::layout::{IMAGE_BASE, USER_END};
    use nc2dd_abi::system_table::Table;

    /// The fault-test system: five tasks, two channels, encoded by the image tool.
    fn fixture() -> Vec<u8> {
        let text = include_str!("../../../tests/systems/faults.toml");
        let known = image::assemble::known_servers();
        image::system::parse(text, "faults.toml", &known)
            .unwrap()
            .to_table()
    }

    #[test]
    fn regions_are_disjoint_user_only_and_guarded() {
        let bytes = fixture();
        let t = Table::decode(&bytes).unwrap();
        for index in 0..t.task_count() {
            let p = plan(&t, index).unwrap();
            for m in &p {
                assert!(m.start >= IMAGE_BASE && m.end() <= USER_END, "{m:?}");
                assert_eq!(m.start % PAGE, 0);
            }
            for (i, a) in p.iter().enumerate() {
                for b in &p[i + 1..] {
                    assert!(
                        a.end() <= b.start || b.end() <= a.start,
                        "{a:?} overlaps {b:?}"
                    );
                }
            }
            let stack = p.iter().find(|m| m.kind == Kind::Stack).unwrap();
            assert_eq!(stack.end(), STACK_TOP);
            assert!(
                !p.iter()
                    .any(|m| m.start < stack.start && m.end() > stack.start - PAGE)
            );
            let info_page = p.iter().find(|m| m.kind == Kind::Info).unwrap();
            assert!(!info_page.writable);
        }
    }

    #[test]
    fn a_channel_is_mapped_in_its_two_ends_only_at_one_address() {
        let bytes = fixture();
        let t = Table::decode(&bytes).unwrap();
        for (ci, ch) in t.channels().enumerate() {
            for index in 0..t.task_count() {
                let p = plan(&t, index).unwrap();
                let here: Vec<_> = p.iter().filter(|m| m.kind == Kind::Channel(ci)).collect();
                let is_end = ch.ends.iter().any(|e| e.task == index);
                assert_eq!(here.len(), usize::from(is_end));
                if let Some(m) = here.first() {
                    assert_eq!(m.start, channel_base(ci));
                    assert_eq!(m.pages * PAGE, ch.size);
                }
            }
        }
    }

    #[test]
    fn tasks_get_only_their_own_arguments() {
        let bytes = fixture();
        let t = Table::decode(&bytes).unwrap();
        let cmd = "console=com1 nc2dd.faulter.mode=exec-stack nc2dd.shutdown=allow \
                   nc2dd.faulter.x=1 nc2dd.bystander-a.rounds=5 nc2dd.faulterx.y=2";
        let gens = vec![0; t.task_count()];
        let faulter = (0..t.task_count())
            .find(|&i| t.task(i).unwrap().name == "faulter")
            .unwrap();
        let i = info(&t, faulter, &gens, cmd).unwrap();
        assert_eq!(i.arg("mode"), Some("exec-stack"));
        assert_eq!(i.arg("x"), Some("1"));
        assert_eq!(i.arg("y"), None);
        assert_eq!(i.arg("rounds"), None);
        let by = (0..t.task_count())
            .find(|&i| t.task(i).unwrap().name == "bystander-a")
            .unwrap();
        assert_eq!(info(&t, by, &gens, cmd).unwrap().arg("rounds"), Some("5"));
    }

    #[test]
    fn info_page_names_peers_bits_and_generations() {
        let bytes = fixture();
        let t = Table::decode(&bytes).unwrap();
        let gens: Vec<u32> = (0..t.task_count() as u32).map(|i| i * 10).collect();
        for index in 0..t.task_count() {
            let info = info(&t, index, &gens, "").unwrap();
            let task = t.task(index).unwrap();
            assert_eq!(info.name(), task.name);
            assert_eq!(info.generation, gens[index]);
            assert_eq!(info.task_count as usize, t.task_count());
            for c in info.channels() {
                let (ci, ch) = t
                    .channels()
                    .enumerate()
                    .find(|(_, ch)| ch.name == c.name())
                    .unwrap();
                let me = ch.ends.iter().position(|e| e.task == index).unwrap();
                assert_eq!(c.peer as usize, ch.ends[1 - me].task);
                assert_eq!(c.peer_generation, gens[c.peer as usize]);
                assert_eq!(c.kick_bit, ch.ends[me].kick_bit);
                assert_eq!(c.base, channel_base(ci));
            }
        }
    }
}
