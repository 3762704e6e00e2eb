# PySceneDetect 0.6.4 exactly as MIO's utils.extract_frames drives it (VideoManager, default
# ContentDetector, auto downscale); prints the cuts and the frames save_images(num_images=1)
# picks. Expected values of runtime/tests/video.rs. Needs: pip install scenedetect==0.6.4
# opencv-python-headless. Usage: python pyscenedetect_reference.py VIDEO
import sys
import numpy as np
from scenedetect.video_manager import VideoManager
from scenedetect.scene_manager import SceneManager
from scenedetect.stats_manager import StatsManager
from scenedetect.detectors.content_detector import ContentDetector
vm = VideoManager([sys.argv[1]]); sm = SceneManager(StatsManager()); sm.add_detector(ContentDetector())
vm.set_downscale_factor(); vm.start(); sm.detect_scenes(frame_source=vm)
scenes = sm.get_scene_list()
print("cuts", [s.get_frames() for s, _ in scenes[1:]])
mids = []
for s, e in scenes:
    r = range(s.get_frames(), s.get_frames() + max(1, e.get_frames() - s.get_frames()))
    a = np.array_split(np.array(list(r)), 1)[0]
    mids.append(int(a[len(a) // 2]))
print("frames", mids)
