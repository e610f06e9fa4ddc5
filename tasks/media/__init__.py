"""Media tools shared by every chain: ffmpeg/ffprobe command building (`ffmpeg`, `video`),
reading MP3/MP4 headers without a process (`mp3`, `mp4`), and running the tools (`tools`)."""
