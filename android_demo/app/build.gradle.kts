plugins {
    id("com.android.application")
    id("org.jetbrains.kotlin.android")
}

// MNN's prebuilt Android libraries: gradle.properties `dhm.mnnDir` (or -Pdhm.mnnDir=…).
val mnnDir: File = rootProject.file(providers.gradleProperty("dhm.mnnDir").getOrElse("third_party/mnn-android"))

android {
    namespace = "ai.dhm.demo"
    compileSdk = 34
    ndkVersion = "26.3.11579264"

    defaultConfig {
        applicationId = "ai.dhm.demo"
        minSdk = 24
        targetSdk = 34
        versionCode = 1
        versionName = "0.1.0"
        ndk { abiFilters += listOf("arm64-v8a") }
        externalNativeBuild {
            cmake {
                arguments += listOf("-DMNN_DIR=${mnnDir.absolutePath}", "-DANDROID_STL=c++_shared")
                cppFlags += "-std=c++17"
            }
        }
    }

    externalNativeBuild {
        cmake {
            path = file("src/main/cpp/CMakeLists.txt")
            version = "3.22.1"
        }
    }

    // libMNN.so (and its GPU backends when present) ship inside the APK next to libdhm_jni.so.
    sourceSets["main"].jniLibs.srcDirs(File(mnnDir, "libs"))

    // The model and clip are large binary files: keep them uncompressed so they can be mapped.
    androidResources { noCompress += listOf("mnn", "f32", "wav") }

    buildTypes {
        release {
            isMinifyEnabled = false
            signingConfig = signingConfigs.getByName("debug")
        }
    }
    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
    kotlinOptions { jvmTarget = "17" }
}
