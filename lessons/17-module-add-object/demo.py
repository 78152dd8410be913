"""Lesson 17: who owns __version__ after PyModule_AddObject?"""
import hashtable
import lab

lab.say("hashtable's init made the string __version__ and added it to the module.")
version = hashtable.__version__
lab.refcount(version, "__version__", "hashtable.__version__, bound to version")
lab.say("hashtable.__version__ is %r" % version)
