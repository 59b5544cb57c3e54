"""The source's workflow: an im2rec ``.lst`` / ``.rec`` with a hard column, into GluonCV training.

``samplers.gluoncv.lst`` writes the ``.lst`` from VOC XML (``difficult``) or COCO JSON
(``iscrowd``); GluonCV's ``LstDetection`` and ``RecordFileDetection`` read it with the flag in
label column 5, which the patched transform and network read after ``install()``.
"""
import json
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest
from mxnet import gluon

gluoncv = pytest.importorskip('gluoncv')
from gluoncv.data import LstDetection, RecordFileDetection, VOCDetection  # noqa: E402
from gluoncv.data.batchify import FasterRCNNTrainBatchify  # noqa: E402
from gluoncv.data.transforms.presets import rcnn as presets  # noqa: E402

import samplers.gluoncv as sg  # noqa: E402
from samplers.gluoncv import _common, lst  # noqa: E402
from conftest import zoo_fixture  # noqa: E402
from helpers import training_task, write_voc  # noqa: E402

pytestmark = [pytest.mark.filterwarnings('ignore::UserWarning'),
              pytest.mark.usefixtures('uninstall_gluoncv')]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEIGHT, WIDTH = 192, 256
# (xmin, ymin, xmax, ymax, VOC class index, difficult) per object, per image, 0-based.
IMAGES = [
    [(16, 16, 112, 112, 11, 0), (128, 40, 240, 176, 14, 1)],   # a dog, a difficult person
    [(24, 32, 120, 160, 7, 1), (140, 20, 236, 110, 2, 1)],     # every object difficult
    [],                                                        # no object: left out
    [(60, 50, 200, 170, 6, 0)],                                # a car, nothing difficult
]


@pytest.fixture(scope='module')
def voc_dir(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('voc'))
    write_voc(root, [[(lst.VOC_CLASSES[c], x1 + 1, y1 + 1, x2 + 1, y2 + 1, d)
                      for x1, y1, x2, y2, c, d in objects] for objects in IMAGES],
              WIDTH, HEIGHT, split='trainval')
    return os.path.join(root, 'VOC2007')


@pytest.fixture(scope='module')
def voc_lst(voc_dir, tmp_path_factory):
    path = str(tmp_path_factory.mktemp('lst') / 'train.lst')
    assert lst.voc_to_lst(voc_dir, path, split='trainval') == 3
    return path


def voc_labels(voc_dir):
    voc = VOCDetection(root=os.path.dirname(voc_dir), splits=[(2007, 'trainval')])
    return [voc[i][1] for i in range(len(voc)) if len(voc[i][1])]


# ----------------------------------------------------------------------------- the .lst file
def test_voc_lst_lines_have_the_header_objects_of_width_6_and_the_path(voc_lst):
    with open(voc_lst) as f:
        lines = [line.rstrip('\n').split('\t') for line in f]
    assert [line[0] for line in lines] == ['0', '1', '2']
    assert [line[-1] for line in lines] == ['JPEGImages/000000.jpg', 'JPEGImages/000001.jpg',
                                            'JPEGImages/000003.jpg']
    numbers = [np.array(line[1:-1], float) for line in lines]
    for values, objects in zip(numbers, [IMAGES[0], IMAGES[1], IMAGES[3]]):
        np.testing.assert_array_equal(values[:4], [4, 6, WIDTH, HEIGHT])
        rows = values[4:].reshape(-1, 6)
        want = np.array(objects, float)
        np.testing.assert_array_equal(rows[:, 0], want[:, 4])    # class first
        np.testing.assert_array_equal(rows[:, 5], want[:, 5])    # difficult last
        np.testing.assert_allclose(rows[:, 1:5], want[:, :4] / [WIDTH, HEIGHT, WIDTH, HEIGHT],
                                   rtol=1e-7)


def test_lst_detection_puts_the_flag_in_column_5_as_voc_detection(voc_dir, voc_lst):
    dataset = LstDetection(voc_lst, root=voc_dir)
    want = voc_labels(voc_dir)
    assert len(dataset) == len(want) == 3
    for i, label in enumerate(want):
        got = dataset[i][1]
        assert got.shape == (len(label), 6)
        np.testing.assert_allclose(got, label, atol=1e-4)
        np.testing.assert_array_equal(got[:, 4:], label[:, 4:])


def test_pixel_corners_read_exactly_without_normalisation(voc_dir, tmp_path):
    path = str(tmp_path / 'pixels.lst')
    lst.voc_to_lst(voc_dir, path, split='trainval', normalized=False)
    dataset = LstDetection(path, root=voc_dir, coord_normalized=False)
    for i, label in enumerate(voc_labels(voc_dir)):
        np.testing.assert_array_equal(dataset[i][1], label)


COCO = {
    'images': [{'id': 7, 'file_name': 'a.jpg', 'width': 200, 'height': 100},
               {'id': 3, 'file_name': 'b.jpg', 'width': 50, 'height': 40},
               {'id': 9, 'file_name': 'empty.jpg', 'width': 10, 'height': 10}],
    'categories': [{'id': 18, 'name': 'dog'}, {'id': 1, 'name': 'person'},
                   {'id': 3, 'name': 'car'}],
    'annotations': [
        {'id': 1, 'image_id': 7, 'category_id': 1, 'bbox': [10, 20, 30, 40], 'iscrowd': 0},
        {'id': 2, 'image_id': 7, 'category_id': 18, 'bbox': [50, 0, 100, 60], 'iscrowd': 1},
        {'id': 3, 'image_id': 3, 'category_id': 3, 'bbox': [5, 5, 10, 10]},
        {'id': 4, 'image_id': 3, 'category_id': 3, 'bbox': [5, 5, 0, 10], 'iscrowd': 0},
        {'id': 5, 'image_id': 9, 'category_id': 1, 'bbox': [1, 1, 0, 0], 'iscrowd': 0},
    ]}


@pytest.fixture
def coco_json(tmp_path):
    path = str(tmp_path / 'instances.json')
    with open(path, 'w') as f:
        json.dump(COCO, f)
    return path


def test_coco_lst_takes_iscrowd_as_the_flag_and_sorted_category_ids_as_classes(coco_json,
                                                                               tmp_path):
    path = str(tmp_path / 'coco.lst')
    assert lst.coco_to_lst(coco_json, path, image_dir='train') == 2
    dataset = LstDetection(path, root='unused', coord_normalized=False)
    assert dataset._items == [os.path.join('unused', 'train', 'b.jpg'),
                              os.path.join('unused', 'train', 'a.jpg')]
    # Category ids 1, 3, 18 -> person 0, car 1, dog 2; the zero-width box is left out.
    labels = [np.array(dataset._labels[i]) for i in range(2)]
    np.testing.assert_array_equal(labels[0][:4], [4, 6, 50, 40])
    np.testing.assert_allclose(labels[0][4:], [1, 5 / 50, 5 / 40, 15 / 50, 15 / 40, 0])
    np.testing.assert_allclose(labels[1][4:].reshape(-1, 6),
                               [[0, 0.05, 0.2, 0.2, 0.6, 0], [2, 0.25, 0, 0.75, 0.6, 2]])


def test_lst_hard_column_values_are_those_install_reads():
    # lst.py needs only the standard library, so it writes its own copy of the values.
    assert (lst.HARD, lst.CROWD) == (_common.HARD, _common.CROWD)


def test_coco_lst_classes_pick_and_order_categories(coco_json, tmp_path):
    path = str(tmp_path / 'coco.lst')
    assert lst.coco_to_lst(coco_json, path, classes=['dog'], normalized=False) == 1
    with open(path) as f:
        values = np.array(f.read().split('\t')[1:-1], float)
    np.testing.assert_array_equal(values, [4, 6, 200, 100, 0, 50, 0, 150, 60, 2])


def test_cli_writes_what_the_functions_write(voc_dir, voc_lst, coco_json, tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO)
    out = str(tmp_path / 'cli.lst')
    run = subprocess.run([sys.executable, '-m', 'samplers.gluoncv.lst', 'voc', voc_dir, out,
                          '--split', 'trainval'], env=env, capture_output=True, text=True,
                         check=True)
    assert 'wrote 3 images' in run.stdout
    with open(out) as a, open(voc_lst) as b:
        assert a.read() == b.read()
    assert lst.main(['--pixels', 'coco', coco_json, out, '--image-dir', 'x',
                     '--classes', 'dog,car']) == 0
    want = str(tmp_path / 'fn.lst')
    lst.coco_to_lst(coco_json, want, 'x', ['dog', 'car'], normalized=False)
    with open(out) as a, open(want) as b:
        assert a.read() == b.read()


def test_bad_sources_raise_value_error(voc_dir, tmp_path):
    with pytest.raises(ValueError, match="class 'dog' is not in classes"):
        lst.voc_to_lst(voc_dir, str(tmp_path / 'x.lst'), 'trainval', classes=['cat', 'person'])
    bad = dict(COCO, annotations=[dict(COCO['annotations'][0], iscrowd=2)])
    path = str(tmp_path / 'bad.json')
    with open(path, 'w') as f:
        json.dump(bad, f)
    with pytest.raises(ValueError, match='iscrowd must be 0 or 1'):
        lst.coco_to_lst(path, str(tmp_path / 'x.lst'))
    with pytest.raises(ValueError, match='width and height must be finite and > 0'):
        lst.lst_line(0, 'a.jpg', 0, 10, [(0, 1, 1, 2, 2, 0)])
    with pytest.raises(ValueError, match='path'):
        lst.lst_line(0, 'a\tb.jpg', 10, 10, [(0, 1, 1, 2, 2, 0)])


# (class, xmin, ymin, xmax, ymax, difficult) in VOC's 1-based pixels, as the XML holds them.
KEPT = [('dog', 17, 17, 113, 113, 0), ('person', 129, 41, 241, 177, 1),
        (' Dog ', 30, 30, 90, 90, 0),                 # VOCDetection strips and lower-cases
        ('bird', 30, 30, 90, 90, '1.9'),              # VOCDetection's int() fails: 0
        ('bird', 1, 1, WIDTH + 1, HEIGHT + 1, 0)]     # the whole image: 0-based [0, 256]
DROPPED = [('cat', 100, 10, 50, 60, 0),               # x2 < x1
           ('cat', 50, 10, 50, 60, 1),                # no width
           ('car', 1000, 1000, 1200, 1100, 0),        # outside the image
           ('car', 0, 10, 50, 60, 0),                 # x1 = -1 in 0-based pixels
           ('car', 'nan', 10, 50, 60, 0), ('car', 10, 10, 'inf', 60, 0)]


@pytest.mark.parametrize('normalized', [True, False])
def test_voc_lst_keeps_the_boxes_and_flags_voc_detection_keeps(tmp_path, normalized):
    root = str(tmp_path)
    write_voc(root, [KEPT + DROPPED, DROPPED], WIDTH, HEIGHT, split='trainval')
    voc_dir = os.path.join(root, 'VOC2007')
    path = str(tmp_path / 'train.lst')
    assert lst.voc_to_lst(voc_dir, path, split='trainval', normalized=normalized) == 1
    want = voc_labels(voc_dir)
    assert len(want) == 1 and len(want[0]) == len(KEPT)
    got = LstDetection(path, root=voc_dir, coord_normalized=normalized)[0][1]
    np.testing.assert_allclose(got, want[0], atol=1e-4 if normalized else 0)
    np.testing.assert_array_equal(got[:, 4:], want[0][:, 4:])


@pytest.mark.parametrize('field, text', [('width', 'inf'), ('width', 'nan'), ('height', '0'),
                                         ('width', '')])
def test_voc_lst_refuses_an_image_size_that_is_not_finite_and_positive(tmp_path, field, text):
    # VOCDetection keeps every box of a <width>inf</width>; the .lst has no finite width to
    # divide the corners by, so refuse the file.
    root = str(tmp_path)
    write_voc(root, [KEPT[:1]], WIDTH, HEIGHT, split='trainval')
    xml = os.path.join(root, 'VOC2007', 'Annotations', '000000.xml')
    with open(xml) as f:
        text_xml = f.read()
    old = '<{0}>{1}</{0}>'.format(field, WIDTH if field == 'width' else HEIGHT)
    with open(xml, 'w') as f:
        f.write(text_xml.replace(old, '<{0}>{1}</{0}>'.format(field, text)))
    with pytest.raises(ValueError, match=r'000000\.xml: <{}>'.format(field)):
        lst.voc_to_lst(os.path.join(root, 'VOC2007'), str(tmp_path / 'x.lst'), 'trainval')


@pytest.mark.parametrize('difficult', ['true', 'inf', 'nan', '2'])
def test_voc_lst_refuses_a_difficult_that_is_not_a_0_or_1_number(tmp_path, difficult):
    # VOCDetection reads any text int() refuses as 0; a word or an infinity is not a number
    # there to round, so the .lst writer refuses it rather than guess.
    root = str(tmp_path)
    write_voc(root, [[('dog', 17, 17, 113, 113, difficult)]], WIDTH, HEIGHT, split='trainval')
    with pytest.raises(ValueError, match=r'000000\.xml: <difficult> must be'):
        lst.voc_to_lst(os.path.join(root, 'VOC2007'), str(tmp_path / 'x.lst'), 'trainval')


def one_voc_xml(tmp_path, edit):
    """A one-image VOC set whose XML text went through ``edit``; its folder."""
    root = str(tmp_path)
    write_voc(root, [KEPT[:1]], WIDTH, HEIGHT, split='trainval')
    xml = os.path.join(root, 'VOC2007', 'Annotations', '000000.xml')
    with open(xml) as f:
        text = f.read()
    with open(xml, 'w') as f:
        f.write(edit(text))
    return os.path.join(root, 'VOC2007')


@pytest.mark.parametrize('edit, message', [
    (lambda t: t.replace('<bndbox>', '<box>').replace('</bndbox>', '</box>'),
     'an <object> has no <bndbox>'),
    (lambda t: t.replace('<xmin>17</xmin>', ''), r'<bndbox><xmin> must be a number, got None'),
    (lambda t: t.replace('<ymax>113</ymax>', '<ymax>x</ymax>'),
     r"<bndbox><ymax> must be a number, got 'x'"),
    (lambda t: t.replace('<size>', '').replace('</size>', ''), 'has no <size>'),
    (lambda t: t.replace('</annotation>', ''), 'is not well-formed XML'),
])
def test_voc_lst_names_the_file_and_field_of_a_broken_annotation(tmp_path, edit, message):
    voc_dir = one_voc_xml(tmp_path, edit)
    with pytest.raises(ValueError, match=r'000000\.xml:? .*' + message):
        lst.voc_to_lst(voc_dir, str(tmp_path / 'x.lst'), 'trainval')


def write_coco_json(tmp_path, annotations):
    path = str(tmp_path / 'instances.json')
    with open(path, 'w') as f:
        json.dump(dict(COCO, annotations=annotations), f)
    return path


def test_coco_lst_leaves_out_nan_boxes_as_coco_detection(tmp_path):
    good = COCO['annotations'][0]
    path = write_coco_json(tmp_path, [good] + [dict(good, id=10 + i, bbox=bbox) for i, bbox in
                                               enumerate([[float('nan'), 20, 30, 40],
                                                          [10, 20, float('nan'), 40]])])
    out = str(tmp_path / 'coco.lst')
    assert lst.coco_to_lst(path, out, normalized=False) == 1
    with open(out) as f:
        values = np.array(f.read().split('\t')[1:-1], float)
    np.testing.assert_array_equal(values, [4, 6, 200, 100, 0, 10, 20, 40, 60, 0])


@pytest.mark.parametrize('value', [float('inf'), -float('inf')])
def test_coco_lst_refuses_an_infinite_bbox_value(tmp_path, value):
    path = write_coco_json(tmp_path, [dict(COCO['annotations'][0], bbox=[10, 20, value, 40])])
    with pytest.raises(ValueError, match=r'instances\.json annotation 1: bbox must be finite'):
        lst.coco_to_lst(path, str(tmp_path / 'x.lst'))


def test_a_failed_write_leaves_the_previous_lst_file_as_it_was(voc_dir, voc_lst, tmp_path):
    path = str(tmp_path / 'train.lst')
    with open(voc_lst) as src, open(path, 'w') as out:
        out.write(src.read())
    before = sorted(os.listdir(str(tmp_path)))

    def images():
        yield 'a.jpg', 10, 10, [(0, 1, 1, 5, 5, 0)]
        raise ValueError('a bad annotation')
    with pytest.raises(ValueError, match='a bad annotation'):
        lst.write_lst(path, images())
    with open(path) as now, open(voc_lst) as was:
        assert now.read() == was.read()
    assert sorted(os.listdir(str(tmp_path))) == before  # no temporary file left behind


def test_write_lst_writes_through_a_temporary_file_in_the_same_folder(tmp_path, monkeypatch):
    # os.replace is atomic only within one file system: the temporary file sits beside the
    # .lst, and the .lst appears only once complete.
    path = str(tmp_path / 'out.lst')
    seen = []
    replace = os.replace
    monkeypatch.setattr(lst.os, 'replace', lambda a, b: (seen.append((a, b, os.path.exists(b))),
                                                         replace(a, b)))
    assert lst.write_lst(path, [('a.jpg', 10, 10, [(0, 1, 1, 5, 5, 0)])]) == 1
    (src, dst, existed), = seen
    assert dst == path and os.path.dirname(src) == str(tmp_path) and not existed
    with open(path) as f:
        assert f.read().startswith('0\t4\t6\t10\t10\t0\t0.1')


@pytest.mark.parametrize('change, message', [
    (dict(bbox=None), r'annotation 1: bbox must be \[x, y, width, height\], got None'),
    (dict(bbox=[1, 2, 3]), r'annotation 1: bbox must be \[x, y, width, height\]'),
    (dict(bbox=[1, 2, 'a', 4]), r"annotation 1: bbox must be a number, got 'a'"),
    (dict(iscrowd=None), r'annotation 1: iscrowd must be 0 or 1, got None'),
    (dict(iscrowd='1'), r"annotation 1: iscrowd must be 0 or 1, got '1'"),
])
def test_coco_lst_names_the_file_annotation_and_field_of_a_broken_annotation(tmp_path, change,
                                                                             message):
    ann = dict(COCO['annotations'][0], **change)
    if change.get('bbox', 0) is None:
        del ann['bbox']
    path = write_coco_json(tmp_path, [ann])
    with pytest.raises(ValueError, match=r'instances\.json ' + message):
        lst.coco_to_lst(path, str(tmp_path / 'x.lst'))


@pytest.mark.parametrize('field, value, message', [
    ('width', None, r'image 7: width must be a number'),
    ('height', 'ten', "image 7: height must be a number, got 'ten'"),
    ('width', float('inf'), 'image 7: width must be finite and > 0'),
    ('file_name', None, 'image 7: file_name must be a string'),
])
def test_coco_lst_names_the_file_image_and_field_of_a_broken_image(tmp_path, field, value,
                                                                   message):
    image = dict(COCO['images'][0], **{field: value})
    if value is None:
        del image[field]
    path = str(tmp_path / 'instances.json')
    with open(path, 'w') as f:
        json.dump(dict(COCO, images=[image] + COCO['images'][1:]), f)
    with pytest.raises(ValueError, match=r'instances\.json ' + message):
        lst.coco_to_lst(path, str(tmp_path / 'x.lst'))


def test_coco_lst_names_a_file_that_is_not_json(tmp_path):
    path = str(tmp_path / 'instances.json')
    with open(path, 'w') as f:
        f.write('{"images": [')
    with pytest.raises(ValueError, match=r'instances\.json is not JSON'):
        lst.coco_to_lst(path, str(tmp_path / 'x.lst'))


def test_lst_files_are_utf_8_whatever_the_locale(tmp_path):
    # COCO JSON is UTF-8; the .lst is written in UTF-8 too, under an ASCII locale as well.
    coco = dict(COCO, images=[dict(COCO['images'][0], file_name='café ü.jpg')])
    source = str(tmp_path / 'instances.json')
    with open(source, 'w', encoding='utf-8') as f:
        json.dump(coco, f, ensure_ascii=False)
    out = str(tmp_path / 'coco.lst')
    code = 'import sys; from samplers.gluoncv import lst; lst.coco_to_lst(sys.argv[1], sys.argv[2])'
    env = dict(os.environ, PYTHONPATH=REPO, LC_ALL='C', LANG='C', PYTHONUTF8='0',
               PYTHONCOERCECLOCALE='0')
    run = subprocess.run([sys.executable, '-c', code, source, out], env=env,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    with open(out, encoding='utf-8') as f:
        assert f.read().rstrip('\n').split('\t')[-1] == 'café ü.jpg'
    # GluonCV's LstDetection reads in the locale's encoding: Python's UTF-8 mode reads it there.
    code = 'import sys, samplers; from gluoncv.data import LstDetection; ' \
        'print(ascii(LstDetection(' \
        'sys.argv[1], root="r")._items))'
    run = subprocess.run([sys.executable, '-c', code, out], env=dict(env, PYTHONUTF8='1'),
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == ascii([os.path.join('r', 'café ü.jpg')])


# ----------------------------------------------------------------------------- the .rec file
def write_rec(lst_path, root, prefix):
    """Pack ``lst_path``'s images (their JPEG bytes as they are) and labels into a .rec/.idx."""
    record = mx.recordio.MXIndexedRecordIO(prefix + '.idx', prefix + '.rec', 'w')
    with open(lst_path) as f:
        for line in f:
            parts = line.rstrip('\n').split('\t')
            index, label, path = int(parts[0]), np.array(parts[1:-1], np.float32), parts[-1]
            with open(os.path.join(root, path), 'rb') as img:
                header = mx.recordio.IRHeader(0, label, index, 0)
                record.write_idx(index, mx.recordio.pack(header, img.read()))
    record.close()
    return prefix + '.rec'


@pytest.fixture(scope='module')
def voc_rec(voc_dir, voc_lst, tmp_path_factory):
    return write_rec(voc_lst, voc_dir, str(tmp_path_factory.mktemp('rec') / 'train'))


def test_record_file_detection_reads_what_lst_detection_reads(voc_dir, voc_lst, voc_rec):
    records, files = RecordFileDetection(voc_rec), LstDetection(voc_lst, root=voc_dir)
    assert len(records) == len(files) == 3
    for i in range(3):
        (img_r, lab_r), (img_f, lab_f) = records[i], files[i]
        np.testing.assert_array_equal(img_r.asnumpy(), img_f.asnumpy())
        np.testing.assert_allclose(lab_r, lab_f, atol=1e-5)
        np.testing.assert_array_equal(lab_r[:, 5], lab_f[:, 5])


def test_pack_img_records_carry_the_flag_too(voc_dir, voc_lst, tmp_path):
    prefix = str(tmp_path / 'packed')
    record = mx.recordio.MXIndexedRecordIO(prefix + '.idx', prefix + '.rec', 'w')
    files = LstDetection(voc_lst, root=voc_dir)
    for i in range(len(files)):
        img = files[i][0].asnumpy()[:, :, ::-1]  # pack_img encodes with OpenCV: BGR
        record.write_idx(i, mx.recordio.pack_img(
            mx.recordio.IRHeader(0, files._labels[i].astype(np.float32), i, 0), img,
            quality=95, img_fmt='.jpg'))
    record.close()
    records = RecordFileDetection(prefix + '.rec')
    for i in range(len(files)):
        np.testing.assert_array_equal(records[i][1][:, 4:], files[i][1][:, 4:])


# ----------------------------------------------------------------------------- end to end
NUM_SAMPLE = 32  # second-stage samples per image


# A C4 Faster R-CNN built under install() (our second-stage sampler), few samples.
net = zoo_fixture('net', 'faster_rcnn_resnet50_v1b_voc', NUM_SAMPLE, installed=True)


def first_batches(net, dataset, count):
    """GluonCV's training pipeline (its transform class and batchify), seeded: the first
    ``count`` batches."""
    np.random.seed(0)
    mx.random.seed(0)
    transform = presets.FasterRCNNDefaultTrainTransform(HEIGHT, WIDTH, net, ashape=net.ashape,
                                                        flip_p=0.0)
    loader = gluon.data.DataLoader(dataset.transform(transform), batch_size=1, shuffle=False,
                                   batchify_fn=FasterRCNNTrainBatchify(net, 1), num_workers=0)
    out = []
    for batch in loader:
        out.append([(p[0] if isinstance(p, (list, tuple)) else p) for p in batch])
        if len(out) == count:
            return out
    return out


def test_lst_to_lst_detection_to_patched_transform_to_network(net, voc_dir, voc_lst, voc_rec):
    sg.install()
    data = first_batches(net, LstDetection(voc_lst, root=voc_dir), 2)
    labels = [batch[1].asnumpy()[0] for batch in data]
    assert labels[0][:, 5].tolist() == [0, 1] and labels[1][:, 5].tolist() == [1, 1]
    # RPN: no positive anchor on a hard box; the all-hard image has none at all.
    rpn_cls = [batch[2].asnumpy() for batch in data]
    assert (rpn_cls[0] > 0).any() and not (rpn_cls[1] > 0).any()
    # The same targets from the .rec through RecordFileDetection.
    rec = first_batches(net, RecordFileDetection(voc_rec), 2)
    for a, b in zip(data, rec):
        np.testing.assert_array_equal(a[2].asnumpy(), b[2].asnumpy())
        np.testing.assert_allclose(a[1].asnumpy(), b[1].asnumpy(), atol=1e-3)
    # One forward/backward each, as GluonCV's script takes it: no positive proposal on a hard box.
    task, trainer = training_task(net)
    seen = []
    net.hybridize(False)
    hook = net.sampler.register_forward_hook(
        lambda block, inputs, outputs: seen.append([o.asnumpy()[0] for o in outputs]))
    try:
        for batch in data:
            losses = task.forward_backward([p.as_in_context(mx.cpu()) for p in batch])[:4]
            trainer.step(1)
            assert np.isfinite(np.concatenate([x.asnumpy().ravel() for x in losses])).all()
    finally:
        hook.detach()
    assert len(seen) == 2
    for (_rois, samples, matches), label in zip(seen, labels):
        hard = label[:, 5] == 1
        positive = samples > 0
        assert not hard[matches[positive].astype(int)].any()
        if not hard.all():
            assert positive.any()
        else:
            assert not positive.any()
    # Without install() (GluonCV's own objects), the difficult objects are taught as positives.
    sg.uninstall()
    stock = first_batches(net, LstDetection(voc_lst, root=voc_dir), 2)
    assert (stock[1][2].asnumpy() > 0).any()


def test_coco_lst_crowd_regions_give_the_rpn_labels_of_coco_detection(tmp_path):
    # COCO JSON -> coco_to_lst -> LstDetection, and COCODetection, each through GluonCV's
    # transform under install(): the crowd regions (hard column 2, the IoF rule) give the same
    # RPN labels, with the anchors inside them ignored, not negative. The .lst's corners are
    # COCO's x + w, COCODetection's x + w - 1: its boxes are moved to the .lst's first.
    pytest.importorskip('pycocotools')
    from gluoncv.data import COCODetection
    from samplers.gluoncv.transforms import _level_anchors
    from tools.crowd_check import TRAIN, count_inside, write_coco
    root = write_coco(str(tmp_path / 'coco'))
    path = str(tmp_path / 'coco.lst')
    assert lst.coco_to_lst(os.path.join(root, 'annotations', 'instances_train2017.json'), path,
                           image_dir='train2017') == len(TRAIN)
    net = gluoncv.model_zoo.get_model('faster_rcnn_resnet50_v1b_coco', pretrained=False,
                                      pretrained_base=False)
    net.initialize()
    sg.install()
    files = LstDetection(path, root=root)
    coco = COCODetection(root=root, splits='instances_train2017', use_crowd=False)
    transform = presets.FasterRCNNDefaultTrainTransform(256, 256, net, flip_p=0.0,
                                                        num_sample=10 ** 6)
    inside = 0
    for (img_f, label_f), (img_c, label_c) in zip(files, coco):
        label_c = label_c + np.array([0, 0, 1, 1, 0, 0], label_c.dtype)
        np.testing.assert_allclose(label_f, label_c, atol=1e-4)
        np.testing.assert_array_equal(label_f[:, 4:], label_c[:, 4:])  # hard column 0 or 2
        out_f, out_c = transform(img_f, label_f), transform(img_c, label_c)
        cls_f, cls_c = (np.asarray(out[2]).reshape(-1) for out in (out_f, out_c))
        np.testing.assert_array_equal(cls_f, cls_c)
        height, width = out_f[0].shape[1:]
        anchors = np.concatenate([a for _, a in _level_anchors(transform, height, width)])
        resized = out_f[1]
        crowd = resized[resized[:, 5] == _common.CROWD, :4]
        assert count_inside(anchors, crowd) > 0
        inside += count_inside(anchors[cls_f == 0], crowd)
    assert inside == 0
