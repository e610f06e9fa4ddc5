"""CSS recordings: fetching their hostile `video_url`s (`fetch`), when one is complete
(`settle`) and how its media is made (`steps`)."""
