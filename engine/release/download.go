package release

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/berthhq/berth/internal/filehash"
)

// partialSuffix names the file a download grows in until it is verified.
const partialSuffix = ".partial"

// errStaleResume marks a resumed download whose whole failed the hash: the
// kept prefix may belong to other content, so Download starts over once.
var errStaleResume = errors.New("resumed download does not verify")

// Download fetches the signed package t into destFile. Bytes go to
// destFile+".partial" first; an interrupted download resumes from there
// (an HTTP Range request, or an Azure Blob read at an offset). It never
// reads more than the signed length, checks the length and SHA-256 against
// the verified metadata, and only then renames the file into place: on any
// failure destFile is left untouched.
//
// A hash mismatch deletes the partial file and wraps ErrHashMismatch; more
// bytes than signed delete it and wrap ErrLengthMismatch; fewer bytes (a
// truncated object) keep it for a later resume and wrap ErrLengthMismatch.
// progress, when set, is called with the bytes done and the total.
func (c *Client) Download(ctx context.Context, t Target, destFile string, progress func(done, total int64)) error {
	st, err := c.signed(t)
	if err != nil {
		return fmt.Errorf("download %s: %w", t.Path, err)
	}
	if progress == nil {
		progress = func(int64, int64) {}
	}
	if err := os.MkdirAll(filepath.Dir(destFile), 0o755); err != nil {
		return fmt.Errorf("download %s: %w", st.Path, err)
	}
	err = c.download(ctx, st, destFile, progress)
	if errors.Is(err, errStaleResume) {
		c.log.Warn("resumed download failed its hash; starting over", "target", st.Path)
		err = c.download(ctx, st, destFile, progress)
	}
	if err != nil {
		return fmt.Errorf("download %s: %w", st.Path, err)
	}
	c.log.Info("downloaded release package", "target", st.Path, "file", destFile, "length", st.Length)
	return nil
}

func (c *Client) download(ctx context.Context, t Target, destFile string, progress func(done, total int64)) error {
	partial := destFile + partialSuffix
	var offset int64
	if fi, err := os.Stat(partial); err == nil {
		offset = fi.Size()
		if offset > t.Length || !fi.Mode().IsRegular() {
			if err := os.Remove(partial); err != nil {
				return err
			}
			offset = 0
		}
	}
	resumed := offset > 0
	if resumed {
		c.log.Info("resuming download", "target", t.Path, "from", offset, "of", t.Length)
	}
	progress(offset, t.Length)
	if offset < t.Length {
		if err := c.fetch(ctx, t, partial, offset, progress); err != nil {
			return err
		}
	}
	sum, n, err := filehash.SHA256(partial)
	if err != nil {
		return err
	}
	if n != t.Length {
		// Only possible if someone else writes the partial file meanwhile.
		_ = os.Remove(partial)
		return fmt.Errorf("%w: %s holds %d bytes, signed length is %d", ErrLengthMismatch, partial, n, t.Length)
	}
	if sum != t.SHA256 {
		_ = os.Remove(partial)
		if resumed {
			return errStaleResume
		}
		return fmt.Errorf("%w: got sha256 %s, signed %s: the package at %s was tampered with or corrupted; deleted the download — republish the package (berth-control releases publish) or fix the mirror",
			ErrHashMismatch, sum, t.SHA256, c.src)
	}
	if err := os.Rename(partial, destFile); err != nil {
		return err
	}
	return nil
}

// fetch appends the object's bytes from offset to partial, reading at most
// one byte more than the signed length allows, to tell "too long".
func (c *Client) fetch(ctx context.Context, t Target, partial string, offset int64, progress func(done, total int64)) error {
	remote := remotePath(t)
	rc, total, err := c.src.open(ctx, remote, offset)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s is missing at %s: publish the repository again (berth-control releases publish): %w", remote, c.src, err)
		}
		return err
	}
	defer rc.Close()
	if total > t.Length {
		_ = os.Remove(partial)
		return fmt.Errorf("%w: %s is %d bytes, more than the signed %d: refusing it (tampered or wrong object)", ErrLengthMismatch, remote, total, t.Length)
	}
	f, err := os.OpenFile(partial, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	done := offset
	buf := make([]byte, 256<<10)
	lr := io.LimitReader(rc, t.Length-offset+1)
	var copyErr error
	for {
		n, rerr := lr.Read(buf)
		if n > 0 {
			if _, werr := f.Write(buf[:n]); werr != nil {
				copyErr = werr
				break
			}
			done += int64(n)
			if done > t.Length {
				break
			}
			progress(done, t.Length)
		}
		if err := ctx.Err(); err != nil {
			copyErr = err
			break
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			copyErr = rerr
			break
		}
	}
	syncErr := f.Sync()
	if cerr := f.Close(); syncErr == nil {
		syncErr = cerr
	}
	switch {
	case done > t.Length:
		_ = os.Remove(partial)
		return fmt.Errorf("%w: %s is longer than the signed %d bytes: refusing it (tampered or wrong object)", ErrLengthMismatch, remote, t.Length)
	case copyErr != nil:
		return fmt.Errorf("interrupted at %d of %d bytes (kept %s to resume): %w", done, t.Length, partial, copyErr)
	case syncErr != nil:
		return syncErr
	case done < t.Length:
		return fmt.Errorf("%w: %s ended after %d of %d bytes (truncated; kept %s to resume): publish the package again or retry later",
			ErrLengthMismatch, remote, done, t.Length, partial)
	}
	return nil
}
