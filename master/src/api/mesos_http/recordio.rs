//! RecordIO, the framing of Mesos's streaming responses: each record is its length in bytes
//! as decimal ASCII, a newline, then the record (`"23\n{\"type\":\"HEARTBEAT\"}"`).

/// Frames one record.
pub fn encode(record: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(record.len() + 8);
    encode_into(&mut out, record);
    out
}

/// Frames one record at the end of `out`.
pub fn encode_into(out: &mut Vec<u8>, record: &[u8]) {
    use std::io::Write as _;
    let _ = writeln!(out, "{}", record.len());
    out.extend_from_slice(record);
}

/// Reassembles records from chunks that may split them anywhere.
#[derive(Debug, Default)]
pub struct Decoder {
    buffer: Vec<u8>,
}

/// A stream that does not follow the framing.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("bad RecordIO framing: {0}")]
pub struct FramingError(pub String);

/// Records longer than this are refused rather than buffered.
const MAX_RECORD: usize = 64 << 20;

impl Decoder {
    /// Adds a chunk and returns every record it completes.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Vec<u8>>, FramingError> {
        self.buffer.extend_from_slice(chunk);
        let mut records = Vec::new();
        loop {
            let Some(newline) = self.buffer.iter().position(|&b| b == b'\n') else {
                if self.buffer.len() > 20 {
                    return Err(FramingError(
                        "no length prefix in the first 20 bytes".into(),
                    ));
                }
                break;
            };
            let header = std::str::from_utf8(&self.buffer[..newline])
                .map_err(|_| FramingError("length prefix is not ASCII".into()))?;
            let length: usize = header
                .trim()
                .parse()
                .map_err(|_| FramingError(format!("length prefix {header:?} is not a number")))?;
            if length > MAX_RECORD {
                return Err(FramingError(format!(
                    "record of {length} bytes is too large"
                )));
            }
            if self.buffer.len() < newline + 1 + length {
                break;
            }
            let record = self.buffer[newline + 1..newline + 1 + length].to_vec();
            self.buffer.drain(..newline + 1 + length);
            records.push(record);
        }
        Ok(records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_any_split() {
        let stream: Vec<u8> = [&b"{\"a\":1}"[..], b"", b"hello\nworld"]
            .iter()
            .flat_map(|r| encode(r))
            .collect();
        for split in 0..stream.len() {
            let mut d = Decoder::default();
            let mut got = d.push(&stream[..split]).unwrap();
            got.extend(d.push(&stream[split..]).unwrap());
            assert_eq!(
                got,
                vec![b"{\"a\":1}".to_vec(), vec![], b"hello\nworld".to_vec()]
            );
        }
        assert!(Decoder::default().push(b"x1\n").is_err());
    }
}
