//! Frame Streams (fstrm), the framing dnstap rides on: big-endian length-prefixed data
//! frames, and control frames behind a zero length (READY, ACCEPT, START, STOP,
//! FINISH). A writer opens a bidirectional stream: READY with the content type, the
//! reader's ACCEPT, START; it closes with STOP and waits for FINISH.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The content type of a dnstap stream.
pub(crate) const CONTENT_TYPE: &[u8] = b"protobuf:dnstap.Dnstap";

const ACCEPT: u32 = 0x01;
const START: u32 = 0x02;
const STOP: u32 = 0x03;
const READY: u32 = 0x04;
const FINISH: u32 = 0x05;
const FIELD_CONTENT_TYPE: u32 = 0x01;

/// A control frame of one type, with the content-type field when `content_type`.
fn control(kind: u32, content_type: bool) -> Vec<u8> {
    let mut body = kind.to_be_bytes().to_vec();
    if content_type {
        body.extend_from_slice(&FIELD_CONTENT_TYPE.to_be_bytes());
        body.extend_from_slice(&(CONTENT_TYPE.len() as u32).to_be_bytes());
        body.extend_from_slice(CONTENT_TYPE);
    }
    let mut frame = 0u32.to_be_bytes().to_vec();
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    frame
}

/// Read one control frame; its type and whether it names our content type.
async fn read_control<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<(u32, bool)> {
    let escape = r.read_u32().await?;
    if escape != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "fstrm: a data frame where a control frame was due",
        ));
    }
    let len = r.read_u32().await? as usize;
    if !(4..=512).contains(&len) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("fstrm: control frame of {len} bytes"),
        ));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    let kind = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
    let mut fields = &body[4..];
    let mut ours = false;
    while fields.len() >= 8 {
        let field = u32::from_be_bytes([fields[0], fields[1], fields[2], fields[3]]);
        let n = u32::from_be_bytes([fields[4], fields[5], fields[6], fields[7]]) as usize;
        let Some(value) = fields.get(8..8 + n) else {
            break;
        };
        ours |= field == FIELD_CONTENT_TYPE && value == CONTENT_TYPE;
        fields = &fields[8 + n..];
    }
    Ok((kind, ours))
}

/// The writer's side of the handshake: READY, wait for ACCEPT of our content type,
/// START.
pub(crate) async fn open<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S) -> io::Result<()> {
    s.write_all(&control(READY, true)).await?;
    s.flush().await?;
    match read_control(s).await? {
        (ACCEPT, true) => {}
        (ACCEPT, false) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "fstrm: the collector does not accept protobuf:dnstap.Dnstap",
            ));
        }
        (kind, _) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("fstrm: control frame {kind} where ACCEPT was due"),
            ));
        }
    }
    s.write_all(&control(START, true)).await?;
    s.flush().await
}

/// Append the header of a data frame of `len` bytes to `out` (the payload follows).
pub(crate) fn data_header(out: &mut Vec<u8>, len: usize) {
    out.extend_from_slice(&(len as u32).to_be_bytes());
}

/// Append one data frame holding `payload` to `out`.
#[cfg(test)]
pub(crate) fn data(out: &mut Vec<u8>, payload: &[u8]) {
    data_header(out, payload.len());
    out.extend_from_slice(payload);
}

/// Close the stream: STOP, then wait for the reader's FINISH.
pub(crate) async fn close<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S) -> io::Result<()> {
    s.write_all(&control(STOP, false)).await?;
    s.flush().await?;
    match read_control(s).await? {
        (FINISH, _) => Ok(()),
        (kind, _) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("fstrm: control frame {kind} where FINISH was due"),
        )),
    }
}

/// The reader's side, for tests: accept a writer's stream and read its data frames
/// until STOP (answered with FINISH).
#[cfg(test)]
pub(crate) async fn read_all<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
) -> io::Result<Vec<Vec<u8>>> {
    assert_eq!(read_control(s).await?, (READY, true));
    s.write_all(&control(ACCEPT, true)).await?;
    assert_eq!(read_control(s).await?, (START, true));
    let mut frames = Vec::new();
    loop {
        let len = s.read_u32().await? as usize;
        if len == 0 {
            let n = s.read_u32().await? as usize;
            let mut body = vec![0u8; n];
            s.read_exact(&mut body).await?;
            assert_eq!(body, STOP.to_be_bytes());
            s.write_all(&control(FINISH, false)).await?;
            return Ok(frames);
        }
        let mut frame = vec![0u8; len];
        s.read_exact(&mut frame).await?;
        frames.push(frame);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_frames_are_laid_out_as_the_spec_says() {
        let ready = control(READY, true);
        let mut want = vec![0, 0, 0, 0, 0, 0, 0, 34, 0, 0, 0, 4, 0, 0, 0, 1, 0, 0, 0, 22];
        want.extend_from_slice(CONTENT_TYPE);
        assert_eq!(ready, want);
        assert_eq!(control(STOP, false), [0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 3]);
        let mut out = Vec::new();
        data(&mut out, b"abc");
        assert_eq!(out, [0, 0, 0, 3, b'a', b'b', b'c']);
    }

    #[tokio::test]
    async fn handshake_against_a_reader() {
        let (mut w, mut r) = tokio::io::duplex(1024);
        let reader = tokio::spawn(async move {
            assert_eq!(read_control(&mut r).await.unwrap(), (READY, true));
            r.write_all(&control(ACCEPT, true)).await.unwrap();
            assert_eq!(read_control(&mut r).await.unwrap(), (START, true));
            assert_eq!(r.read_u32().await.unwrap(), 2);
            let mut two = [0u8; 2];
            r.read_exact(&mut two).await.unwrap();
            assert_eq!(read_control(&mut r).await.unwrap(), (STOP, false));
            r.write_all(&control(FINISH, false)).await.unwrap();
        });
        open(&mut w).await.unwrap();
        let mut out = Vec::new();
        data(&mut out, b"hi");
        w.write_all(&out).await.unwrap();
        close(&mut w).await.unwrap();
        reader.await.unwrap();
    }

    #[tokio::test]
    async fn a_reader_of_another_content_type_is_refused() {
        let (mut w, mut r) = tokio::io::duplex(1024);
        tokio::spawn(async move {
            let _ = read_control(&mut r).await;
            r.write_all(&control(ACCEPT, false)).await.unwrap();
        });
        assert!(open(&mut w).await.is_err());
    }
}
