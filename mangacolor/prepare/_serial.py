"""Imported first in every worker process: OpenCV single-threaded before any OpenCV call.

The pool runs one process per core, so OpenCV's own thread pool would only compete. The setting
must come before OpenCV starts that pool: a process forked while it runs (the fork server forks
every worker) can hang on the next change of the thread count.
"""

import cv2

cv2.setNumThreads(1)
